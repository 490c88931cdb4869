"""K-fold cross-validation (tools/cross_validate.py): one training run per fold, then mean ±
std of a metric.

Each fold runs exactly what tools/train_net.py runs (:func:`bridle.engine.entry.main`), with the
overrides ``KEY VALUE ... <fold-key> <fold> OUTPUT_DIR <OUTPUT_DIR>/fold_<fold>``. The metric of a
fold is read from its ``final_results.json`` (the last or the val-selected evaluation); the
summary (per-fold values, mean, population std) goes to ``<OUTPUT_DIR>/cv_results.json``.
"""

import argparse
import json
import logging
import math
import os
import sys
from typing import List, Optional, Tuple

# Not under "bridle": every fold run points the "bridle" loggers at its own OUTPUT_DIR.
logger = logging.getLogger("cross_validate")


def parse_args(argv=None, description: Optional[str] = None) -> argparse.Namespace:
    """The command line of tools/cross_validate.py (``description``: its --help text)."""
    p = argparse.ArgumentParser(
        description=__doc__ if description is None else description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config-file", default="", metavar="FILE", help="training config (as train_net.py)")
    p.add_argument("--fold-key", required=True, help="config key that selects the held-out fold")
    p.add_argument("--folds", nargs="+", required=True, help="fold values, one run each")
    p.add_argument("--metric", default="", help="metric of final_results.json (default: primary metric)")
    p.add_argument(
        "--select", choices=("last", "val"), default="last", help="last evaluation (default) or the val-selected one"
    )
    p.add_argument("--num-gpus", type=int, default=1, help="processes per fold run")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="skip finished folds, resume unfinished ones")
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="retrain every fold afresh, deleting the runs already in its fold directory",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, default=None, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def _flat_keys(node, prefix: str = "") -> set:
    from bridle.config import CfgNode

    keys = set()
    for k, v in node.items():
        keys.add(prefix + k)
        if isinstance(v, CfgNode):
            keys |= _flat_keys(v, prefix + k + ".")
    return keys


def split_folds_and_opts(folds: List[str], opts: List[str], cfg) -> Tuple[List[str], List[str]]:
    """``--folds 1 2 KEY VALUE`` puts the overrides into ``folds``: they start at the first
    token that is a config key."""
    keys = _flat_keys(cfg)
    for i, tok in enumerate(folds):
        if tok in keys:
            return folds[:i], folds[i:] + list(opts)
    return list(folds), list(opts)


def fold_value(cfg, key: str, value) -> str:
    """The override string for ``key`` so that the config receives ``value`` with the type of
    the key's current value (quoted for string keys, checked for numeric ones)."""
    node = cfg
    *parents, last = key.split(".")
    for p in parents:
        if p not in node:
            raise KeyError(f"--fold-key {key}: no config node '{p}'.")
        node = node[p]
    if last not in node:
        raise KeyError(f"--fold-key {key}: not a config key (is the plugin that declares it loaded?).")
    cur = node[last]
    if isinstance(cur, bool):
        raise TypeError(f"--fold-key {key} is a boolean; folds must be int, float or str keys.")
    if isinstance(cur, str):
        return repr(str(value))
    if isinstance(cur, int):
        try:
            return str(int(value))
        except ValueError:
            raise ValueError(f"--fold-key {key} holds an int; fold '{value}' is not one.") from None
    if isinstance(cur, float):
        return str(float(value))
    return str(value)  # lists etc.: the literal as given


def fold_metric(final: dict, metric: str, select: str, path: str) -> float:
    rec = final.get("val_selected") if select == "val" else final.get("last")
    if not rec:
        raise KeyError(
            f"{path}: no {'val-selected' if select == 'val' else 'last'} evaluation "
            + ("(is DATASETS.VAL set?)" if select == "val" else "(is DATASETS.TEST set?)")
        )
    test = rec.get("test")
    if not test:
        raise KeyError(f"{path}: the evaluation has no test results (set DATASETS.TEST).")
    metric = metric or final.get("primary_metric", "")
    if metric not in test:
        raise KeyError(f"{path}: metric '{metric}' not among the test metrics {sorted(test)}.")
    return float(test[metric])


def summarize(values: dict) -> Tuple[float, float]:
    vals = list(values.values())
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return mean, std


def main(argv=None, description: Optional[str] = None) -> dict:
    """Run every fold (tools/cross_validate.py); returns the summary written to cv_results.json."""
    from bridle.config import get_cfg, load_config
    from bridle.engine.defaults import default_argument_parser
    from bridle.engine.entry import main as train_main
    from bridle.engine.launch import launch
    from bridle.utils.logger import setup_logger

    args = parse_args(argv, description)
    base = get_cfg()
    folds, opts = split_folds_and_opts(args.folds, args.opts or [], base)
    if not folds:
        raise ValueError("--folds needs at least one fold value.")
    load_config(args.config_file, opts, freeze=False, cfg=base)
    from bridle.registry import TRAINER
    from bridle.trainers.finetune import FinetuneTrainer

    trainer_cls = TRAINER.get(base.TRAINER.NAME)
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, FinetuneTrainer)):
        raise ValueError(
            f"Cross-validation needs a downstream trainer that writes final_results.json "
            f"(TRAINER.NAME finetune or linear_probe); got TRAINER.NAME '{base.TRAINER.NAME}'."
        )
    root = base.OUTPUT_DIR
    os.makedirs(root, exist_ok=True)
    setup_logger(root, 0, name="cross_validate")  # console + <OUTPUT_DIR>/log.txt
    parser = default_argument_parser()

    values, metric = {}, args.metric
    for fold in folds:
        out = os.path.join(root, f"fold_{fold}")
        result_path = os.path.join(out, "final_results.json")
        if args.resume and os.path.isfile(result_path):
            logger.info(f"Fold {fold}: {result_path} exists, not rerun")
        else:
            run_args = parser.parse_args([])
            run_args.config_file = args.config_file
            run_args.num_gpus = args.num_gpus
            run_args.resume = args.resume
            run_args.overwrite = args.overwrite
            run_args.opts = opts + [args.fold_key, fold_value(base, args.fold_key, fold), "OUTPUT_DIR", out]
            logger.info(f"Fold {fold}: training in {out}")
            launch(train_main, args.num_gpus, args=(run_args,))
        if not os.path.isfile(result_path):
            raise FileNotFoundError(f"Fold {fold}: the run wrote no {result_path} (is DATASETS.TEST set?).")
        with open(result_path) as f:
            final = json.load(f)
        metric = metric or final.get("primary_metric", "")
        values[str(fold)] = fold_metric(final, metric, args.select, result_path)
        logger.info(f"Fold {fold}: test {metric} = {values[str(fold)]:.4f}")

    mean, std = summarize(values)
    summary = {
        "fold_key": args.fold_key,
        "metric": metric,
        "select": args.select,
        "folds": values,
        "mean": mean,
        "std": std,
        "std_ddof": 0,
    }
    with open(os.path.join(root, "cv_results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    line = f"Cross-validation over {len(values)} folds ({args.fold_key}): test {metric} = {mean:.4f} ± {std:.4f}"
    logger.info(line)
    return summary


def cli(argv=None, description: Optional[str] = None) -> None:
    """:func:`main` as a command: a user error ends in one line ``bridle: error: ...`` and exit
    code 2 (as tools/train_net.py); a bug keeps its traceback."""
    from bridle.errors import EXIT_USER_ERROR, report_user_error, user_error_message

    try:
        main(argv, description)
    except Exception as e:  # one line for a user error (as train_net.py); a bug keeps its traceback
        msg = user_error_message(e)
        if msg is None:
            raise
        report_user_error(msg, e)
        sys.exit(EXIT_USER_ERROR)
