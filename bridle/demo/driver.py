"""The demos' driver: given a modality's data and configs (a :class:`DemoSpec`, built by the
plugin that owns the data), pretrain BRIDLE on an unlabelled pool, evaluate the iteration-1 and
the final encoder against a random init by linear probe and fine-tuning (test accuracy at the
val-selected evaluation; nothing is selected on test), add a baseline without deep learning
(logistic regression on the raw model input), measure the final tokenizer's code usage over the
whole pool, print a table, write ``OUTPUT_DIR/report.json`` and the plots.

A plugin's demo builds its data, then calls :func:`run_demo` with a :class:`DemoSpec`. Data
with several label sets on the same items (e.g. which digit and which direction of
motion) give the spec one :class:`DemoTask` each: the pretraining and the code usage are shared,
the evaluation and the baselines run per task (report.json ``tasks.<name>``).
The keys of report.json are documented in docs/demos.md ("The demos' report.json").
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

# The repository this package is installed from (editable): the demos run its tools/ (train_net,
# tokenize_dataset in subprocesses) and read its configs/.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOCOLS = (("linear_probe", "linprobe"), ("finetune", "finetune"))  # report key, spec attribute
ENCODERS = ("bridle_iter1", "bridle", "random_init")
ENCODER_PHASES = ("encoder_cold", "encoder", "joint")
TOKENIZER_PHASES = ("tokenizer", "joint")
PHASE_DIR = re.compile(r"^(\d+)_(\w+)$")
LOGREG_C = (0.001, 0.01, 0.1, 1.0, 10.0)  # picked on val


@dataclass
class DemoSpec:
    name: str  # the modality's name: report.json's "demo"
    task: str  # one line for the table's title
    pretrain_config: str  # config files (paths)
    finetune_config: str
    linprobe_config: str
    pretrain_opts: List[str] = field(default_factory=list)  # KEY VALUE: the unlabelled pool
    downstream_opts: List[str] = field(default_factory=list)  # KEY VALUE: labelled/val/test data
    notes: Dict[str, object] = field(default_factory=dict)  # data sizes etc., copied into the report
    # Several label sets on the same data: name -> DemoTask, each evaluated (and baselined) on its
    # own; report["tasks"][name], and the top-level "results"/"baseline" are the first task's.
    tasks: Dict[str, "DemoTask"] = field(default_factory=dict)
    # Further logistic-regression baselines: report key -> a function of the loader's input batch
    # (e.g. one frame of a clip) whose flattened output is the feature vector.
    baselines: Dict[str, Callable] = field(default_factory=dict)


@dataclass
class DemoTask:
    task: str  # one line for the table's title
    downstream_opts: List[str] = field(default_factory=list)  # KEY VALUE: this label set's data


def say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def demo_env() -> dict:
    """The configs use one data-loader process: leave it a core. With every core given to torch's
    intra-op threads as well, a 2-core machine trains about half as fast (oversubscription).
    The subprocesses import the installed packages, so PYTHONPATH is left as it is."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    return env


def train_net(
    config: str, out_dir: str, opts: Sequence[str], env: dict, resume: bool = False, overwrite: bool = False
) -> None:
    """tools/train_net.py in a subprocess; ``resume`` continues a run in ``out_dir``, ``overwrite``
    replaces one (without either, a directory holding a run is refused). A failed run ends the
    demo with one line naming it (SystemExit) under the run's own error message."""
    flags = ["--resume"] if resume else ["--overwrite"] if overwrite else []
    args = (
        [os.path.join(REPO, "tools", "train_net.py")]
        + flags
        + ["--config-file", config, "OUTPUT_DIR", out_dir]
        + list(opts)
    )
    print("$ " + " ".join(os.path.relpath(a, REPO) if a.startswith(REPO) else a for a in args), flush=True)
    code = subprocess.run([sys.executable] + args, cwd=REPO, env=env).returncode
    if code != 0:  # its own one-line error is above; no traceback of this wrapper on top of it
        raise SystemExit(f"bridle demo: tools/train_net.py for {os.path.relpath(out_dir, REPO)} exited with {code}.")


def children_cpu_seconds() -> float:
    """User + sys CPU-seconds of this process's finished (waited-for) children and theirs."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_cfg(config: str, opts: Sequence[str] = ()):
    from bridle.config import load_config

    return load_config(config, opts)


def pretrain_opts(spec: DemoSpec) -> List[str]:
    """The pretraining run's overrides: the spec's, and, when the pretraining config turns the
    online probes on (TEST.ONLINE_PROBE.ENABLED), the downstream data as the probe set (its
    labelled train and val splits, through TEST.ONLINE_PROBE.OPTS)."""
    opts = list(spec.pretrain_opts)
    if load_cfg(spec.pretrain_config, opts).TEST.ONLINE_PROBE.ENABLED and spec.downstream_opts:
        opts += ["TEST.ONLINE_PROBE.OPTS", repr([str(o) for o in spec.downstream_opts])]
    return opts


# ---------------------------------------------------------------------------- the schedule's outputs
def schedule_phases(pretrain_dir: str) -> List[tuple]:
    """[(k, phase, dir)] of a finished schedule, in order."""
    phases = []
    for d in os.listdir(pretrain_dir):
        m = PHASE_DIR.match(d)
        if m and os.path.isfile(os.path.join(pretrain_dir, d, "model_final.pth")):
            phases.append((int(m.group(1)), m.group(2), os.path.join(pretrain_dir, d)))
    if not phases:
        raise FileNotFoundError(f"No finished phase (<k>_<phase>/model_final.pth) in '{pretrain_dir}'.")
    return sorted(phases)


def schedule_checkpoints(pretrain_dir: str) -> Dict[str, str]:
    """The checkpoints the demo evaluates: ``bridle_iter1`` = the first encoder phase (BRIDLE's
    iteration 1, trained on the cold-start tokenizer's codes), ``bridle`` = the last one, and
    ``tokenizer`` = the last phase that trained a tokenizer ("" when none did)."""
    phases = schedule_phases(pretrain_dir)
    enc = [d for _, p, d in phases if p in ENCODER_PHASES]
    tok = [d for _, p, d in phases if p in TOKENIZER_PHASES]
    if not enc:
        raise ValueError(f"The schedule in '{pretrain_dir}' has no encoder phase.")
    final = lambda d: os.path.join(d, "model_final.pth")  # noqa: E731
    return {"bridle_iter1": final(enc[0]), "bridle": final(enc[-1]), "tokenizer": final(tok[-1]) if tok else ""}


def phase_quantizer(final_checkpoint: str) -> dict:
    """``{name, num_levels, codebook_size}`` of the quantizer whose codes the encoder phase of
    ``final_checkpoint`` predicted (from the phase's saved config.yaml: per-phase OPTS may give
    the tokenizer phases another quantizer than the cold start's)."""
    q = load_cfg(os.path.join(os.path.dirname(final_checkpoint), "config.yaml")).MODEL.QUANTIZER
    return {"name": str(q.NAME), "num_levels": int(q.NUM_LEVELS), "codebook_size": int(q.CODEBOOK_SIZE)}


# ---------------------------------------------------------------------------- measurements
def selected(results: dict, metric: str = "top1") -> dict:
    """final_results.json -> the val-selected evaluation's numbers (the last one without val)."""
    sel = results.get("val_selected") or results["last"]
    return {
        "test_top1": sel["test"][metric],
        "val_top1": sel.get("val", {}).get(metric, float("nan")),
        "selected_iteration": sel["iteration"],
        "last_test_top1": results["last"]["test"][metric],
    }


def _features(cfg, split: str, features: Optional[Callable] = None):
    """The model's input of every item of ``split`` (eval transform, un-augmented), or
    ``features(input)``, flattened."""
    import numpy as np
    import torch

    from bridle.data.build import build_dataset, build_test_loader

    dataset = build_dataset(cfg, cfg.DATASETS[split.upper()], split, "eval")
    xs, ys = [], []
    with torch.no_grad():
        for batch in build_test_loader(cfg, dataset):
            if batch.get("empty"):
                continue
            x = batch["input"] if features is None else features(batch["input"])
            xs.append(x.flatten(1).float().numpy())
            ys.append(batch["label"].numpy())
    y = np.concatenate(ys)
    if y.ndim == 2:  # one-hot / multi-hot targets (multi-label datasets): the class index
        y = y.argmax(1)
    return np.concatenate(xs), y


def raw_feature_baseline(config: str, opts: Sequence[str], features: Optional[Callable] = None) -> dict:
    """Logistic regression (scikit-learn, standardised inputs) on the flattened model input (or
    ``features`` of it) of the labelled train split; C picked on val among LOGREG_C; test
    accuracy at that C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = load_cfg(config, list(opts) + ["DATALOADER.NUM_WORKERS", "0"])
    (xtr, ytr), (xva, yva), (xte, yte) = (_features(cfg, s, features) for s in ("train", "val", "test"))
    best = None
    for c in LOGREG_C:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(xtr, ytr)
        val = float((clf.predict(xva) == yva).mean())
        if best is None or val > best[0]:  # earliest C on ties
            best = (val, c, float((clf.predict(xte) == yte).mean()))
    return {
        "test_top1": best[2],
        "val_top1": best[0],
        "C": best[1],
        "num_features": int(xtr.shape[1]),
        "train_items": int(len(ytr)),
    }


def code_usage(codes, codebook_size: int) -> List[dict]:
    """codes int [items, patches, levels] -> per level: codes used at least once / codebook size,
    and the perplexity (exp of the entropy) of the code histogram."""
    import numpy as np

    out = []
    for level in range(codes.shape[-1]):
        counts = np.bincount(codes[..., level].reshape(-1).astype(np.int64), minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        out.append(
            {
                "level": level,
                "codebook_size": int(codebook_size),
                "used": int((counts > 0).sum()),
                "usage": float((counts > 0).sum() / codebook_size),
                "perplexity": float(math.exp(-(p * np.log(p)).sum())),
            }
        )
    return out


def tokenizer_usage(weights: str, pretrain_opts: Sequence[str], work_dir: str) -> dict:
    """Tokenize the whole pretraining pool (split "train", eval transform) with the tokenizer of
    ``weights`` (tools/tokenize_dataset.py) and measure each level's usage."""
    import numpy as np

    npz = os.path.join(work_dir, "pool_codes.npz")
    cmd = (
        [
            sys.executable,
            os.path.join(REPO, "tools", "tokenize_dataset.py"),
            "--weights",
            weights,
            "--split",
            "train",
            "--output",
            npz,
        ]
        + list(pretrain_opts)
        + ["DATALOADER.NUM_WORKERS", "0"]
    )
    subprocess.run(cmd, check=True, cwd=REPO, env=demo_env(), stdout=subprocess.DEVNULL)
    codes = np.load(npz)["codes"]
    from bridle.checkpoint import cfg_from_checkpoint, load_checkpoint_file

    size = int(cfg_from_checkpoint(load_checkpoint_file(weights)).MODEL.QUANTIZER.CODEBOOK_SIZE)
    return {
        "checkpoint": weights,
        "split": "train",
        "items": int(codes.shape[0]),
        "tokens_per_item": int(codes.shape[1]),
        "per_level": code_usage(codes, size),
    }


# ---------------------------------------------------------------------------- the demo
def run_downstream(
    spec: DemoSpec, out: str, checkpoints: Dict[str, str], env: dict, protocols=PROTOCOLS, encoders=ENCODERS
) -> Dict[str, Dict[str, dict]]:
    results: Dict[str, Dict[str, dict]] = {}
    for proto, attr in protocols:
        config = getattr(spec, f"{attr}_config")
        results[proto] = {}
        for enc in encoders:
            weights = "" if enc == "random_init" else checkpoints[enc]
            same = [e for e, r in results[proto].items() if e != "random_init" and checkpoints.get(e) == weights]
            if weights and same:  # a one-encoder-phase schedule: iteration 1 is the final encoder
                results[proto][enc] = dict(results[proto][same[0]])
                continue
            d = os.path.join(out, f"{proto}_{enc}")
            t = time.time()
            # re-run every time: the encoders may have changed since (resumed pretraining)
            train_net(config, d, ["MODEL.WEIGHTS", weights] + spec.downstream_opts, env, overwrite=True)
            with open(os.path.join(d, "final_results.json")) as f:
                results[proto][enc] = dict(selected(json.load(f)), seconds=round(time.time() - t, 1))
    return results


def print_table(report: dict) -> None:
    for name, part in report.get("tasks", {"": report}).items():
        if name:
            print(f"  task '{name}': {part['task']}")
        print(f"  {'protocol':<14}{'encoder':<14}{'test':>7}{'val':>7}  (selected at iter; last test)")
        for proto, by_enc in part["results"].items():
            for enc, r in by_enc.items():
                print(
                    f"  {proto:<14}{enc:<14}{r['test_top1']:>7.3f}{r['val_top1']:>7.3f}"
                    f"  ({r['selected_iteration']}; {r['last_test_top1']:.3f})"
                )
        for key in [k for k in part if k.startswith("baseline")]:
            b, what = part[key], "raw input" if key == "baseline" else key[len("baseline_") :].replace("_", " ")
            print(f"  {'logistic regression on ' + what:<28}{b['test_top1']:>7.3f}{b['val_top1']:>7.3f}  (C {b['C']})")
    u = report.get("tokenizer_usage")
    if u:
        print(
            "  final tokenizer, whole-pool code usage per level: "
            + ", ".join(
                f"l{x['level']} {x['usage']:.2f} ({x['used']}/{x['codebook_size']}, ppl {x['perplexity']:.1f})"
                for x in u["per_level"]
            )
        )
    n = report.get("notes", {}).get("test_items")
    if n:
        print(
            f"  One seed; the binomial standard error of an accuracy near 0.75 on {n} test items is "
            f"{(0.75 * 0.25 / n) ** 0.5:.3f}."
        )


def _relative(obj, root: str):
    if isinstance(obj, dict):
        return {k: _relative(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith(root + os.sep):
        return os.path.relpath(obj, root)
    return obj


def set_aside_stale_pretraining(spec: DemoSpec, pre: str) -> None:
    """A pretraining run in ``pre`` whose finished phases ran another config (e.g. configs changed
    since) cannot be resumed: rename it to ``pre.old-N`` (nothing is deleted) and start afresh."""
    if not os.path.isdir(pre):
        return
    from bridle.trainers.schedule import stale_finished_phases

    stale = stale_finished_phases(load_cfg(spec.pretrain_config, pretrain_opts(spec) + ["OUTPUT_DIR", pre]))
    if not stale:
        return
    n = 1
    while os.path.exists(f"{pre}.old-{n}"):
        n += 1
    os.rename(pre, f"{pre}.old-{n}")
    d, changes = stale[0]
    print(
        f"{d} finished with another config ({'; '.join(changes[:3])}{' ...' if len(changes) > 3 else ''}): "
        f"moved the old run to {pre}.old-{n}; pretraining starts afresh.",
        flush=True,
    )


def run_demo(
    spec: DemoSpec, out: str, skip_baseline: bool = False, t_data: float = 0.0, encoders: Sequence[str] = ENCODERS
) -> dict:
    """Pretrain (resumable), evaluate, measure; writes and returns the report."""
    env = demo_env()
    t0 = time.time()
    say("BRIDLE pretraining on the unlabelled pool")
    pre = os.path.join(out, "pretrain")
    set_aside_stale_pretraining(spec, pre)
    cpu0 = children_cpu_seconds()
    train_net(spec.pretrain_config, pre, pretrain_opts(spec), env, resume=True)
    t_pre = time.time() - t0
    cpu_pre = children_cpu_seconds() - cpu0
    ckpts = schedule_checkpoints(pre)
    pcfg = load_cfg(os.path.join(pre, "config.yaml"))

    say("Linear probe and fine-tuning on the labelled subset: iteration-1 / final BRIDLE encoder, random init")
    t1 = time.time()
    tasks = {
        name: replace(spec, task=t.task, downstream_opts=list(t.downstream_opts)) for name, t in spec.tasks.items()
    }
    parts = {name: {"task": t.task} for name, t in tasks.items()}
    for name, t in tasks.items():
        say(f"Task '{name}': {t.task}")
        parts[name]["results"] = run_downstream(t, os.path.join(out, name), ckpts, env, encoders=encoders)
    results = (
        next(iter(parts.values()))["results"] if parts else run_downstream(spec, out, ckpts, env, encoders=encoders)
    )
    t_down = time.time() - t1
    report = {
        "demo": spec.name,
        "task": spec.task,
        "seed": int(pcfg.SEED),
        "schedule": list(pcfg.PRETRAIN.SCHEDULE),
        "quantizer": {enc: phase_quantizer(ckpts[enc]) for enc in ("bridle_iter1", "bridle")},
        "encoders": {k: ckpts[k] for k in ("bridle_iter1", "bridle")},
        "results": results,
        "notes": dict(spec.notes),
    }
    t2 = time.time()
    if parts:
        report["tasks"] = parts
    if not skip_baseline:
        say("Baseline without deep learning: logistic regression on the raw model input")
        for part, t in [(report, spec)] if not parts else [(parts[n], t) for n, t in tasks.items()]:
            part["baseline"] = raw_feature_baseline(t.finetune_config, t.downstream_opts)
            for key, features in spec.baselines.items():
                part[key] = raw_feature_baseline(t.finetune_config, t.downstream_opts, features)
        if parts:
            report.update({k: v for k, v in next(iter(parts.values())).items() if k.startswith("baseline")})
    if ckpts["tokenizer"]:
        say("Final tokenizer: code usage over the whole pretraining pool")
        report["tokenizer_usage"] = tokenizer_usage(ckpts["tokenizer"], spec.pretrain_opts, out)
    report["seconds"] = {
        "data": round(t_data, 1),
        "pretrain": round(t_pre, 1),
        "downstream": round(t_down, 1),
        "baseline_and_usage": round(time.time() - t2, 1),
    }
    # Compute, not wall time (a shared machine): user + sys CPU of the pretraining subprocess and the
    # processes it waited for (its data loaders), this invocation only (a resumed run counts its rest).
    report["pretrain_cpu_seconds"] = round(cpu_pre, 1)
    say("The final encoder and tokenizer as folders (safetensors + config + model card)")
    from bridle.interop.hub import export_run, print_export

    report["export"] = export_run(out, ckpts["bridle"], ckpts["tokenizer"], report)  # OUTPUT_DIR/export/
    report = _relative(report, out)
    with open(os.path.join(out, "report.json.tmp"), "w") as f:
        json.dump(report, f, indent=2)
    os.replace(os.path.join(out, "report.json.tmp"), os.path.join(out, "report.json"))

    try:
        from bridle.utils.plots import plot_output_dir

        plots = plot_output_dir(out)
    except Exception as e:  # plots are a convenience; the report is written already
        plots = []
        print(f"(plots not written: {type(e).__name__}: {e})")
    say(f"Results: {spec.task}")
    print_table(report)
    print(
        f"Wall time {t_data + time.time() - t0:.0f} s (data {t_data:.0f} s, pretraining {t_pre:.0f} s, "
        f"downstream {t_down:.0f} s). Report: {os.path.join(out, 'report.json')}; plots: "
        + (", ".join(os.path.relpath(p, out) for p in plots) or "none")
    )
    print_export(report["export"])  # the exported folders and the commands that use them
    return report


def base_parser(doc: str, default_out: str):
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default=default_out)
    p.add_argument("--skip-baseline", action="store_true", help="no logistic-regression baseline")
    p.add_argument("--config-dir", default="", help="directory holding demo_{pretrain,finetune,linprobe}.yaml")
    p.add_argument("--pretrain-opts", nargs="*", default=[], help="extra KEY VALUE pairs for pretraining")
    p.add_argument(
        "--downstream-opts", nargs="*", default=[], help="extra KEY VALUE pairs for fine-tuning and linear probing"
    )
    return p


def spec_configs(config_dir: str) -> Dict[str, str]:
    return {f"{k}_config": os.path.join(config_dir, f"demo_{k}.yaml") for k in ("pretrain", "finetune", "linprobe")}
