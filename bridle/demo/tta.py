"""Time to accuracy of a demo's pretraining recipe: the linear probe of the final encoder against
the pretraining compute, for the committed recipe and variants of it (several masks per target,
``PRETRAIN.NUM_MASKS``; shorter encoder or tokenizer phases), over several seeds.

A variant is named ``m<M>_e<E>_t<T>``: ``PRETRAIN.NUM_MASKS`` M, every encoder phase's length
(``encoder_cold``, ``encoder``, ``joint``: MAX_ITER, else EPOCHS) times E, the tokenizer phase's
times T, all relative to the demo's ``demo_pretrain.yaml``; ``m1_e1_t1`` is the committed recipe.
Each (variant, seed) pretrains on the demo's unlabelled pool with ``SEED`` = seed (a fresh run),
its compute is the user + sys CPU-seconds of the pretraining subprocess and its data loaders
(``resource.getrusage(RUSAGE_CHILDREN)`` around it: comparable on a shared machine, wall time is
not), then the demo's linear probe (``demo_linprobe.yaml``, same SEED) of its final encoder gives
val accuracy (at the val-selected evaluation) and the test accuracy at that evaluation.
Variants are compared on val only; test is reported, never selected on. Logistic regression on
the raw model input (the demo's baseline) is measured once.

Outputs in ``--out``: ``<variant>/seed<s>/row.json`` per run (a finished run is not redone),
and ``tta.json``, ``tta.md`` (table) and ``tta.png`` (linear-probe accuracy vs CPU-seconds),
also copied to ``--docs-dir`` when given. The demo is chosen by its plugin module
(``--demo-module``, a plugin's demo module), which provides ``parser()`` and
``make_spec(args, out)`` as the demos do. Usage examples: tools/time_to_accuracy.py.
"""

import argparse
import glob
import importlib
import json
import os
import re
import shutil
import statistics
from typing import Dict, List, Optional, Sequence

from .driver import (
    REPO,
    DemoSpec,
    children_cpu_seconds,
    demo_env,
    load_cfg,
    raw_feature_baseline,
    schedule_checkpoints,
    selected,
    train_net,
)

REFERENCE = "m1_e1_t1"  # the committed recipe
VARIANT = re.compile(r"^m(\d+)_e([0-9.]+)_t([0-9.]+)$")
ENCODER_PHASE_KEYS = ("ENCODER_COLD", "ENCODER", "JOINT")
TOKENIZER_PHASE_KEYS = ("TOKENIZER",)


def parse_variant(name: str) -> dict:
    m = VARIANT.match(name)
    if not m or int(m.group(1)) < 1 or float(m.group(2)) <= 0 or float(m.group(3)) <= 0:
        raise ValueError(f"variant '{name}': expected m<M>_e<E>_t<T> with M >= 1 and E, T > 0 (e.g. m4_e0.25_t1).")
    return {
        "num_masks": int(m.group(1)),
        "encoder_fraction": float(m.group(2)),
        "tokenizer_fraction": float(m.group(3)),
    }


def variant_opts(pretrain_cfg, name: str) -> List[str]:
    """The KEY VALUE overrides of variant ``name`` for the demo's pretraining config."""
    v = parse_variant(name)
    opts = ["PRETRAIN.NUM_MASKS", str(v["num_masks"])]
    for keys, frac in ((ENCODER_PHASE_KEYS, v["encoder_fraction"]), (TOKENIZER_PHASE_KEYS, v["tokenizer_fraction"])):
        if frac == 1.0:
            continue
        for k in keys:
            p = pretrain_cfg.PRETRAIN.PHASES[k]
            if int(p.MAX_ITER) > 0:
                opts += [f"PRETRAIN.PHASES.{k}.MAX_ITER", str(max(1, round(int(p.MAX_ITER) * frac)))]
            elif float(p.EPOCHS) > 0:
                opts += [f"PRETRAIN.PHASES.{k}.EPOCHS", str(float(p.EPOCHS) * frac)]
            elif k in ("ENCODER", "TOKENIZER"):  # the phase inherits SOLVER's length: scale that per phase
                s = pretrain_cfg.SOLVER
                if int(s.MAX_ITER) > 0:
                    opts += [f"PRETRAIN.PHASES.{k}.MAX_ITER", str(max(1, round(int(s.MAX_ITER) * frac)))]
                else:
                    opts += [f"PRETRAIN.PHASES.{k}.EPOCHS", str(float(s.EPOCHS) * frac)]
    return opts


def run_one(spec: DemoSpec, out: str, name: str, seed: int, env: dict) -> dict:
    """Pretrain variant ``name`` with SEED ``seed`` (fresh), linear-probe its final encoder; the row."""
    d = os.path.join(out, name, f"seed{seed}")
    row_path = os.path.join(d, "row.json")
    if os.path.isfile(row_path):
        with open(row_path) as f:
            return json.load(f)
    pre = os.path.join(d, "pretrain")
    opts = list(spec.pretrain_opts) + variant_opts(load_cfg(spec.pretrain_config, spec.pretrain_opts), name)
    opts += ["SEED", str(seed)]
    if "ONLINE_PROBE" in load_cfg(spec.pretrain_config, spec.pretrain_opts).TEST:
        # monitoring, not pretraining: its cost grows with the schedule's length; off for every variant
        opts += ["TEST.ONLINE_PROBE.ENABLED", "False"]
    cpu0 = children_cpu_seconds()
    train_net(spec.pretrain_config, pre, opts, env, overwrite=True)  # fresh: the CPU count is the whole run
    cpu = children_cpu_seconds() - cpu0
    weights = schedule_checkpoints(pre)["bridle"]
    lp = os.path.join(d, "linear_probe")
    train_net(
        spec.linprobe_config,
        lp,
        ["MODEL.WEIGHTS", weights, "SEED", str(seed)] + spec.downstream_opts,
        env,
        overwrite=True,
    )
    with open(os.path.join(lp, "final_results.json")) as f:
        sel = selected(json.load(f))
    row = dict(parse_variant(name), variant=name, seed=seed, pretrain_cpu_seconds=round(cpu, 1))
    row.update({k: sel[k] for k in ("val_top1", "test_top1", "selected_iteration")})
    row["opts"] = opts[len(spec.pretrain_opts) :]
    with open(row_path + ".tmp", "w") as f:
        json.dump(row, f, indent=2)
    os.replace(row_path + ".tmp", row_path)
    print(json.dumps(row), flush=True)
    return row


def baseline(spec: DemoSpec, out: str) -> dict:
    path = os.path.join(out, "baseline.json")
    if not os.path.isfile(path):
        b = raw_feature_baseline(spec.finetune_config, spec.downstream_opts)
        with open(path + ".tmp", "w") as f:
            json.dump(b, f, indent=2)
        os.replace(path + ".tmp", path)
    with open(path) as f:
        return json.load(f)


def summarise(rows: Sequence[dict], base: Optional[dict], goal: float = 0.5) -> dict:
    """Per variant: mean CPU-seconds, its ratio to the committed recipe's, mean/per-seed val and
    test; ``reaches`` = val >= the committed recipe's val for every seed (paired by seed), and
    ``within_goal`` = that at <= ``goal`` x its CPU-seconds. Selection is on val only."""
    by: Dict[str, List[dict]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    ref = {r["seed"]: r for r in by.get(REFERENCE, [])}
    ref_cpu = statistics.mean(r["pretrain_cpu_seconds"] for r in ref.values()) if ref else float("nan")
    variants = []
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        cpu = statistics.mean(r["pretrain_cpu_seconds"] for r in rs)
        paired = [r for r in rs if r["seed"] in ref]
        reaches = (
            bool(paired)
            and len(paired) == len(ref)
            and all(r["val_top1"] >= ref[r["seed"]]["val_top1"] for r in paired)
        )
        variants.append(
            dict(
                parse_variant(name),
                variant=name,
                seeds=[r["seed"] for r in rs],
                pretrain_cpu_seconds=round(cpu, 1),
                cpu_ratio=round(cpu / ref_cpu, 3) if ref else None,
                val_top1=[r["val_top1"] for r in rs],
                test_top1=[r["test_top1"] for r in rs],
                val_mean=round(statistics.mean(r["val_top1"] for r in rs), 4),
                test_mean=round(statistics.mean(r["test_top1"] for r in rs), 4),
                reaches_committed_val=reaches,
                within_goal=bool(reaches and ref and cpu <= goal * ref_cpu),
            )
        )
    variants.sort(key=lambda v: v["pretrain_cpu_seconds"])
    fast = [v for v in variants if v["within_goal"] and v["variant"] != REFERENCE]
    best_fast = max(fast, key=lambda v: (v["val_mean"], -v["pretrain_cpu_seconds"])) if fast else None
    return {
        "reference": REFERENCE,
        "goal_cpu_ratio": goal,
        "variants": variants,
        "baseline": base,
        "fastest_reaching_within_goal": best_fast["variant"] if best_fast else None,
    }


def markdown(summary: dict) -> str:
    lines = [
        "| variant | NUM_MASKS | encoder phases × | tokenizer phase × | pretrain CPU-s (mean) | × committed "
        "| val (per seed) | val mean | test (per seed) | test mean | val ≥ committed (every seed) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for v in summary["variants"]:
        lines.append(
            f"| `{v['variant']}` | {v['num_masks']} | {v['encoder_fraction']:g} | {v['tokenizer_fraction']:g} "
            f"| {v['pretrain_cpu_seconds']:.0f} | {v['cpu_ratio'] if v['cpu_ratio'] is not None else '—'} "
            f"| {', '.join(f'{x:.3f}' for x in v['val_top1'])} | {v['val_mean']:.3f} "
            f"| {', '.join(f'{x:.3f}' for x in v['test_top1'])} | {v['test_mean']:.3f} "
            f"| {'yes' if v['reaches_committed_val'] else 'no'} |"
        )
    b = summary.get("baseline")
    if b:
        lines.append("")
        lines.append(
            f"Logistic regression on the raw model input (C {b['C']} chosen on val): val {b['val_top1']:.3f}, "
            f"test {b['test_top1']:.3f}."
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in summary["variants"]:
        xs = [v["pretrain_cpu_seconds"]] * len(v["val_top1"])
        (line,) = ax.plot(xs, v["val_top1"], "o", alpha=0.6, label=f"{v['variant']} val (per seed)")
        ax.plot([v["pretrain_cpu_seconds"]], [v["test_mean"]], "x", color=line.get_color(), ms=9)
    ref = [v for v in summary["variants"] if v["variant"] == summary["reference"]]
    if ref:
        ax.axhline(ref[0]["val_mean"], color="k", ls="--", lw=0.8, label="committed recipe, val mean")
        ax.axvline(summary["goal_cpu_ratio"] * ref[0]["pretrain_cpu_seconds"], color="gray", ls=":", lw=0.8)
        ax.text(
            summary["goal_cpu_ratio"] * ref[0]["pretrain_cpu_seconds"],
            ax.get_ylim()[0],
            f" {summary['goal_cpu_ratio']}× committed CPU",
            color="gray",
            fontsize=8,
            va="bottom",
        )
    b = summary.get("baseline")
    if b:
        ax.axhline(b["val_top1"], color="r", ls="-.", lw=0.8, label="raw-input logistic regression, val")
    ax.set_xlabel("pretraining CPU-seconds (user + sys, pretraining subprocess)")
    ax.set_ylabel("linear-probe top-1 (o: val per seed, x: test mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: str, docs_dir: str = "", prefix: str = "tta") -> dict:
    rows = []
    for p in sorted(glob.glob(os.path.join(out, "*", "seed*", "row.json"))):
        with open(p) as f:
            rows.append(json.load(f))
    if not rows:
        raise FileNotFoundError(f"No finished run (<variant>/seed<s>/row.json) in '{out}'.")
    base = None
    if os.path.isfile(os.path.join(out, "baseline.json")):
        with open(os.path.join(out, "baseline.json")) as f:
            base = json.load(f)
    summary = summarise(rows, base)
    summary["rows"] = rows
    paths = {"json": os.path.join(out, f"{prefix}.json"), "md": os.path.join(out, f"{prefix}.md")}
    with open(paths["json"], "w") as f:
        json.dump(summary, f, indent=2)
    with open(paths["md"], "w") as f:
        f.write(markdown(summary))
    paths["png"] = os.path.join(out, f"{prefix}.png")
    plot(summary, paths["png"])
    if docs_dir:
        os.makedirs(docs_dir, exist_ok=True)
        for p in paths.values():
            shutil.copy(p, os.path.join(docs_dir, os.path.basename(p)))
    print(markdown(summary))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo-module", required=True, help="the plugin's demo module (parser(), make_spec(args, out))")
    p.add_argument("--out", default="", help="study directory (default output/tta_<module>)")
    p.add_argument("--variants", nargs="*", default=[REFERENCE, "m2_e0.5_t1", "m4_e0.25_t1", "m4_e0.5_t1"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--prefix", default="tta", help="file name stem of the table and the plot")
    p.add_argument("--docs-dir", default="", help="also copy the table and plot here (e.g. docs/img)")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table and plot from finished runs")
    p.add_argument("--skip-baseline", action="store_true", help="no raw-input logistic regression")
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    for name in args.variants:
        parse_variant(name)
    out = os.path.abspath(args.out or os.path.join(REPO, "output", "tta_" + args.demo_module.replace(".", "_")))
    if not args.table_only:
        mod = importlib.import_module(args.demo_module)
        spec = mod.make_spec(mod.parser().parse_args([]), out)
        env = demo_env()
        if not args.skip_baseline:
            baseline(spec, out)
        for seed in args.seeds:
            for name in args.variants:
                run_one(spec, out, name, seed, env)
    return write_outputs(out, os.path.abspath(args.docs_dir) if args.docs_dir else "", args.prefix)
