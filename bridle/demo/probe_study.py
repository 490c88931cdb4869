"""Do the online signals predict the real probe? (tools/probe_study.py)

For a demo (``--demo NAME``: the plugin module ``bridle_NAME.demo``, any module with ``parser()`` and
``make_spec(args, out)`` as the plugins' demos have), for each seed: pretrain the demo's
schedule with checkpoints and online probes every ``--period`` iterations
(SOLVER.CHECKPOINT_PERIOD = TEST.ONLINE_PROBE.PERIOD, every checkpoint kept), then run the demo's
offline linear probe (its linprobe config, val-selected val top-1; the test split is never looked
at) on every checkpoint of the encoder phases, and compute the Spearman rank correlation between
each online signal logged at that checkpoint and the offline val top-1: per seed, and over the
checkpoints of all seeds together, and within each encoder phase (mean over the (seed, phase) groups).

Signals: ``knn`` (probe/knn_top1), ``linear`` (probe/linear_top1), ``masked_acc``
(probe/masked_acc), ``perplexity`` (mean over levels of probe/perplexity/l*), ``effective_rank``
(probe/effective_rank), and, for reference, the training loss ``loss_mlm`` (negated: lower is better)
and the checkpoint's iteration itself (``global_iteration``: the schedule's phases concatenated).

Everything is resumable: a finished pretraining or linear probe is reused. Writes
``OUT/study.json`` (every checkpoint's numbers and the correlations) and ``OUT/study.md`` (the table).
"""

import argparse
import importlib
import json
import os
import re
import resource
import time
from typing import Dict, List, Optional, Sequence

from .driver import ENCODER_PHASES, REPO, demo_env, pretrain_opts, schedule_phases, selected, train_net

# global_iteration (phases concatenated): the baseline every signal must beat, "later is better"
SIGNALS = ("knn", "linear", "masked_acc", "perplexity", "effective_rank", "loss_mlm", "global_iteration")
_CKPT = re.compile(r"^model_(\d{7})\.pth$")


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def merged_metrics(path: str) -> Dict[int, dict]:
    """metrics.json -> {iteration: every key logged at it} (rows of one iteration merged)."""
    rows: Dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.setdefault(int(r["iteration"]), {}).update(r)
    return rows


def signals_at(row: dict) -> Dict[str, float]:
    ppl = [v for k, v in row.items() if k.startswith("probe/perplexity/l")]
    out = {
        "knn": row.get("probe/knn_top1"),
        "linear": row.get("probe/linear_top1"),
        "masked_acc": row.get("probe/masked_acc"),
        "perplexity": sum(ppl) / len(ppl) if ppl else None,
        "effective_rank": row.get("probe/effective_rank"),
        "loss_mlm": -row["loss_mlm"] if "loss_mlm" in row else None,
        "probe_seconds": row.get("probe/seconds"),
    }
    return out


def encoder_checkpoints(pre: str) -> List[dict]:
    """Every checkpoint of the encoder phases of the schedule in ``pre``, in training order, with
    the online signals logged at its iteration and the global iteration (phases concatenated)."""
    out, offset = [], 0
    for k, phase, d in schedule_phases(pre):
        rows = merged_metrics(os.path.join(d, "metrics.json"))
        last = max(rows) if rows else 0
        if phase in ENCODER_PHASES:
            ckpts = {int(m.group(1)): os.path.join(d, f) for f in os.listdir(d) for m in [_CKPT.match(f)] if m}
            ckpts[last] = os.path.join(d, "model_final.pth")
            for it in sorted(ckpts):
                # the probe row of a periodic checkpoint is the one at its iteration
                out.append(
                    dict(
                        phase=f"{k}_{phase}",
                        iteration=it,
                        global_iteration=offset + it,
                        checkpoint=ckpts[it],
                        **signals_at(rows.get(it, {})),
                    )
                )
        offset += last
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return None
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return float(rho)


def correlations(points: List[dict]) -> Dict[str, Optional[float]]:
    y = [p["offline_val_top1"] for p in points]
    return {s: spearman([p[s] for p in points], y) for s in SIGNALS}


def within_phase(points: List[dict]) -> Dict[str, Optional[float]]:
    """Per signal, the mean Spearman correlation over the (seed, phase) groups: the comparison a
    user makes inside one encoder phase, where every signal has the same targets."""
    groups: Dict[tuple, List[dict]] = {}
    for p in points:
        groups.setdefault((p["seed"], p["phase"]), []).append(p)
    out = {}
    for s in SIGNALS:
        rhos = [r for g in groups.values() for r in [correlations(g)[s]] if r is not None]
        out[s] = sum(rhos) / len(rhos) if rhos else None
    return out


def run_seed(mod, args, seed: int, out: str, env: dict) -> List[dict]:
    spec = mod.make_spec(mod.parser().parse_args(["--output-dir", out] + list(args.demo_args)), out)
    sd = os.path.join(out, f"seed{seed}")
    pre = os.path.join(sd, "pretrain")
    p = str(args.period)
    opts = pretrain_opts(spec) + ["SEED", str(seed), "SOLVER.CHECKPOINT_PERIOD", p, "SOLVER.MAX_TO_KEEP", "0"]
    opts += ["TEST.ONLINE_PROBE.ENABLED", "True", "TEST.ONLINE_PROBE.PERIOD", p]
    t0, cpu0 = time.time(), children_cpu_seconds()
    train_net(spec.pretrain_config, pre, opts, env, resume=True)
    cpu = children_cpu_seconds() - cpu0
    print(f"pretraining seed {seed}: {time.time() - t0:.0f} s, {cpu:.0f} CPU s", flush=True)
    points = encoder_checkpoints(pre)
    probe_cpu = sum(pt["probe_seconds"] or 0.0 for pt in points)
    cost = os.path.join(sd, "pretrain_cost.json")
    if cpu > 10 * max(probe_cpu, 1.0) or not os.path.isfile(cost):  # this call pretrained (not all reused)
        with open(cost, "w") as f:
            json.dump({"pretrain_cpu_s": round(cpu, 1), "probe_cpu_s": round(probe_cpu, 1)}, f)
    for pt in points:
        lp = os.path.join(sd, "linprobe", f"lp_{pt['phase']}_{pt['iteration']:07d}")  # not a phase-dir name
        res = os.path.join(lp, "final_results.json")
        if not os.path.isfile(res):
            train_net(
                spec.linprobe_config,
                lp,
                ["MODEL.WEIGHTS", pt["checkpoint"]] + spec.downstream_opts,
                env,
                overwrite=True,
            )
        with open(res) as f:
            pt["offline_val_top1"] = selected(json.load(f))["val_top1"]
        pt["seed"] = seed
        pt["checkpoint"] = os.path.relpath(pt["checkpoint"], out)
        print(json.dumps({k: pt[k] for k in ("seed", "phase", "iteration", "offline_val_top1", "knn", "linear")}))
    return points


def table(study: dict) -> str:
    seeds = sorted(study["per_seed"])
    head = "| signal | " + " | ".join(f"seed {s}" for s in seeds) + " | all seeds | within a phase (mean) |"
    lines = [head, "|" + "---|" * (len(seeds) + 3)]

    def fmt(v):
        return "n/a" if v is None else f"{v:+.2f}"

    for s in SIGNALS:
        lines.append(
            f"| {s} | "
            + " | ".join(fmt(study["per_seed"][k][s]) for k in seeds)
            + f" | {fmt(study['all'][s])} | {fmt(study['within_phase'][s])} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None, usage: Optional[str] = None) -> dict:
    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", required=True, help="the plugin whose demo is studied: bridle_<DEMO>.demo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--period",
        type=int,
        default=200,
        help="checkpoint and online-probe period (iterations; a multiple of LOG_PERIOD)",
    )
    p.add_argument("--out", default="", help="output directory (default output/probe_study_<demo>)")
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="options of the demo's own parser (data sizes)")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out or os.path.join(REPO, "output", f"probe_study_{args.demo}"))
    mod = importlib.import_module(f"bridle_{args.demo}.demo")
    env = demo_env()
    points, per_seed = [], {}
    for seed in args.seeds:
        pts = run_seed(mod, args, seed, out, env)
        per_seed[seed] = correlations(pts)
        points += pts
    study = {"demo": args.demo, "period": args.period, "points": points, "per_seed": per_seed}
    study["all"] = correlations(points)
    study["within_phase"] = within_phase(points)
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(study, f, indent=1)
    md = table(study)
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(md + "\n")
    print(f"\nSpearman rank correlation with the offline linear probe (val top-1), {len(points)} checkpoints:\n{md}")
    return study
