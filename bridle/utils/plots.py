"""PNG plots of the runs under an output directory (matplotlib, no display needed); run by
tools/plot_metrics.py.

Every ``metrics.json`` below OUTPUT_DIR is read (one JSON object per line, as the trainers
write it). Two kinds of run are recognised:

- a pretraining schedule: a directory whose ``<k>_<phase>/metrics.json`` are its phases
  (a single pretraining run counts as a one-phase schedule). Its figure ``<name>.png``
  (``pretrain.png`` for OUTPUT_DIR itself or its ``pretrain/``)
  shows, on one iteration axis with the phases side by side: the losses per phase, the
  masked-prediction accuracy, the learning rate, and per codebook level the code usage (CUR),
  perplexity and dead-code count over time; with online probes (TEST.ONLINE_PROBE, ``probe/*``
  keys) a third row: the kNN and linear probe val top-1 across the phases (phases marked and
  named), the held-out masked-token accuracy, and the effective rank of the pooled features;
- a downstream run (its metrics hold ``val/...`` or ``test/...`` evaluations): all of them go
  into ``downstream.png``: val and test top-1 (or the first metric logged) over iterations,
  and the training loss.

The PNGs are written to DIR (default OUTPUT_DIR/plots); the list of files is printed.
"""

import argparse
import json
import math
import os
import re
import sys
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Tuple

PHASE_DIR = re.compile(r"^(\d+)_(\w+)$")
LEVEL_KEY = re.compile(r"^(?P<prefix>.+)/(?P<stat>cur|usage|perplexity|dead_codes)/l(?P<level>\d+)$")
# Directories that never hold a run: TensorBoard logs, the plots themselves, data written by the
# tools, and the caches a plugin keeps under OUTPUT_DIR (any directory named "*_cache").
SKIP_DIRS = {"tb", "plots", "data"}
CACHE_SUFFIX = "_cache"

Series = Dict[str, List[Tuple[int, float]]]


def read_metrics(path: str) -> Series:
    """``metrics.json`` -> {key: [(iteration + 1, value), ...]} sorted by iteration; a repeated
    iteration (a resumed run logs it again) keeps its last value."""
    by_key: Dict[str, Dict[int, float]] = defaultdict(dict)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not a JSON object ({e.msg}).") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("iteration"), int):
                raise ValueError(f"{path}, line {n}: expected an object with an integer 'iteration'.")
            it = rec["iteration"]  # iterations done
            for k, v in rec.items():
                if k != "iteration" and isinstance(v, (int, float)) and math.isfinite(v):
                    by_key[k][it] = float(v)
    return {k: sorted(d.items()) for k, d in by_key.items()}


def find_runs(root: str):
    """(schedules, downstream): schedules = {name: [(phase_label, series), ...]},
    downstream = {name: series}; names are paths relative to ``root``."""
    schedules: Dict[str, List[Tuple[str, Series]]] = OrderedDict()
    downstream: Dict[str, Series] = OrderedDict()
    for d, subdirs, files in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if s not in SKIP_DIRS and not s.endswith(CACHE_SUFFIX))
        phases = sorted(
            (int(m.group(1)), s, m.group(2))
            for s in subdirs
            for m in [PHASE_DIR.match(s)]
            if m and os.path.isfile(os.path.join(d, s, "metrics.json"))
        )
        name = os.path.relpath(d, root)
        name = "" if name == "." else name
        if phases:
            schedules[name] = [
                (f"{k}_{phase}", read_metrics(os.path.join(d, s, "metrics.json"))) for k, s, phase in phases
            ]
            taken = {s for _, s, _ in phases}
            subdirs[:] = [s for s in subdirs if s not in taken]
        if "metrics.json" in files and not PHASE_DIR.match(os.path.basename(d)):
            series = read_metrics(os.path.join(d, "metrics.json"))
            if any(k.startswith(("val/", "test/")) for k in series):
                downstream[name] = series
            elif not phases:
                schedules[name] = [(os.path.basename(d) or "run", series)]
    return schedules, downstream


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _line(ax, points, label, offset=0, **kw):
    if points:
        ax.plot([offset + i for i, _ in points], [v for _, v in points], label=label, **kw)


def _finish(ax, title, ylabel=None):
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("iteration (phases in order)" if ylabel is None else "iteration", fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)


# online probe key -> (panel, legend label, colour): one colour per signal across the phases
PROBE_KEYS = {
    "probe/knn_top1": ("probe", "kNN", "C0"),
    "probe/linear_top1": ("probe", "linear", "C1"),
    "probe/masked_acc": ("masked", "masked-token acc", "C2"),
    "probe/effective_rank": ("rank", "effective rank", "C3"),
}


def plot_schedule(phases: List[Tuple[str, Series]], path: str, title: str) -> str:
    plt = _plt()
    probes = any(k.startswith("probe/") for _, series in phases for k in series)
    fig, axes = plt.subplots(3 if probes else 2, 3, figsize=(13, 9.75 if probes else 6.5))
    ax_loss, ax_acc, ax_lr, ax_cur, ax_ppl, ax_dead = axes.ravel()[:6]
    ax_probe, ax_masked, ax_rank = axes.ravel()[6:] if probes else (None, None, None)
    offset, labelled = 0, set()
    probe_axes = {"probe": ax_probe, "masked": ax_masked, "rank": ax_rank}
    for label, series in phases:
        end = max((pts[-1][0] for pts in series.values() if pts), default=0)
        for k in sorted(series):
            if k.startswith("probe/") and not LEVEL_KEY.match(k):  # online probes (perplexity: its panel)
                if k in PROBE_KEYS:
                    panel, name, color = PROBE_KEYS[k]
                    shown = None if k in labelled else name  # one legend entry per signal
                    labelled.add(k)
                    _line(probe_axes[panel], series[k], shown, offset, marker="o", ms=3, color=color)
                continue
            if k.startswith("loss_"):
                _line(ax_loss, series[k], f"{label}: {k}", offset)
            elif k.endswith("acc"):
                _line(ax_acc, series[k], f"{label}: {k}", offset)
            elif k == "lr":
                _line(ax_lr, series[k], label, offset)
            else:
                m = LEVEL_KEY.match(k)
                if m:
                    ax = {"cur": ax_cur, "usage": ax_cur, "perplexity": ax_ppl, "dead_codes": ax_dead}[m["stat"]]
                    _line(ax, series[k], f"{label}: {m['prefix']} l{m['level']}", offset)
        if offset:
            for ax in axes.ravel():
                ax.axvline(offset, color="0.6", lw=0.8, ls=":")
        if probes:  # name the phases on the probe panel
            ax_probe.text(
                offset + end / 2,
                1.0,
                label,
                ha="center",
                va="bottom",
                fontsize=6,
                color="0.4",
                transform=ax_probe.get_xaxis_transform(),
            )
        offset += end
    _finish(ax_loss, "losses per phase")
    _finish(ax_acc, "masked-prediction accuracy")
    _finish(ax_lr, "learning rate (current value)")
    _finish(ax_cur, "code usage per level (CUR)")
    _finish(ax_ppl, "code perplexity per level")
    _finish(ax_dead, "dead codes per level")
    if probes:
        _finish(ax_probe, "online probe: val top-1 (kNN, linear)")
        _finish(ax_masked, "online: masked-token accuracy (held-out)")
        _finish(ax_rank, "online: effective rank of pooled features")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_downstream(runs: Dict[str, Series], path: str) -> str:
    plt = _plt()
    fig, (ax_val, ax_test, ax_loss) = plt.subplots(1, 3, figsize=(13, 3.6))
    metric = None
    for name, series in runs.items():
        # One metric per panel: top-1 when logged, else the run's first val metric.
        metric = (
            "top1"
            if "val/top1" in series or "test/top1" in series
            else next((k.split("/", 1)[1] for k in sorted(series) if k.startswith(("val/", "test/"))), "")
        )
        _line(ax_val, series.get(f"val/{metric}", []), name, marker="o", ms=3)
        _line(ax_test, series.get(f"test/{metric}", []), name, marker="o", ms=3)
        _line(ax_loss, series.get("total_loss", []), name)
    _finish(ax_val, f"val {metric} (selection)", metric)
    _finish(ax_test, f"test {metric}", metric)
    _finish(ax_loss, "training loss", "loss")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_output_dir(root: str, out: Optional[str] = None) -> List[str]:
    """Write the PNGs of every run under ``root``; returns their paths."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"plot_metrics: '{root}' is not a directory.")
    schedules, downstream = find_runs(root)
    if not schedules and not downstream:
        raise FileNotFoundError(f"plot_metrics: no metrics.json under '{root}'.")
    out = out or os.path.join(root, "plots")
    os.makedirs(out, exist_ok=True)
    written = []
    for name, phases in schedules.items():
        stem = name.replace(os.sep, "_") if name and name != "pretrain" else "pretrain"
        written.append(
            plot_schedule(
                phases,
                os.path.join(out, f"{stem}.png"),
                f"pretraining {name or os.path.basename(os.path.abspath(root))}: " + " -> ".join(p for p, _ in phases),
            )
        )
    if downstream:
        written.append(plot_downstream(downstream, os.path.join(out, "downstream.png")))
    return written


def main(argv=None, usage: Optional[str] = None) -> List[str]:
    """tools/plot_metrics.py: write the PNGs and print their paths; an unreadable or empty
    OUTPUT_DIR ends the process with its message (exit code 1). ``usage``: the tool's examples,
    shown before this module's description in --help."""
    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output_dir", help="a run's OUTPUT_DIR (or a directory holding several runs)")
    p.add_argument("--out", default="", help="where the PNGs go (default OUTPUT_DIR/plots)")
    args = p.parse_args(argv)
    try:
        written = plot_output_dir(args.output_dir, args.out or None)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(str(e))
    for w in written:
        print(w)
    return written
