"""Config validation before any compute is spent.

:func:`validate_config` checks value ranges of the core keys; :func:`validate_schedule` checks
a pretraining schedule: phase names, phase order, and every phase's merged config (with its
``PRETRAIN.PHASES.<PHASE>`` settings and OPTS). Every error names the key, the value found and
what is expected; all errors of a config are reported at once, on one line.

A warm-up at least as long as its run or phase is an error (unless SOLVER.ALLOW_LONG_WARMUP),
one covering half of it or more a warning (:func:`warmup_problems`): here when both lengths are
given in one unit, in ``DefaultTrainer`` (and before a schedule's first phase) once the
iterations per epoch are known.
"""

import os
import re
from typing import Callable, List, Optional, Tuple

from .config import ConfigError, ConfigValueError


def invalid_config(errors: List[str]) -> ConfigValueError:
    """One error per key, on one line (tools/train_net.py prints user errors as one line)."""
    head = "Invalid config: " if len(errors) == 1 else f"Invalid config ({len(errors)} errors): "
    return ConfigValueError(
        head + "; ".join(e.rstrip(".") + ("." if i == len(errors) - 1 else "") for i, e in enumerate(errors))
    )


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()

# (key, predicate, expected) for the core keys.
_RULES: List[tuple] = [
    ("LOG_PERIOD", lambda v: v >= 1, "an integer >= 1"),
    ("SOLVER.BASE_LR", lambda v: v >= 0, "a learning rate >= 0"),
    ("SOLVER.MIN_LR", lambda v: v >= 0, "a learning rate >= 0"),
    ("SOLVER.EPOCHS", lambda v: v >= 0, "a number of epochs >= 0"),
    ("SOLVER.MAX_ITER", lambda v: v >= 0, "a number of iterations >= 0 (0 = use SOLVER.EPOCHS)"),
    ("SOLVER.WARMUP_EPOCHS", lambda v: v >= 0, "a number of epochs >= 0"),
    ("SOLVER.WARMUP_ITERS", lambda v: v >= 0, "a number of iterations >= 0"),
    ("SOLVER.WEIGHT_DECAY", lambda v: v >= 0, "a weight decay >= 0"),
    ("SOLVER.EPS", lambda v: v > 0, "an epsilon > 0"),
    ("SOLVER.BETAS", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two betas in [0, 1)"),
    ("SOLVER.LAYER_DECAY", lambda v: 0 < v <= 1, "a layer decay in (0, 1]"),
    ("SOLVER.CLIP_GRAD", lambda v: v >= 0, "a gradient-norm bound >= 0 (0 = off)"),
    ("SOLVER.PRECISION", lambda v: v in ("fp32", "bf16", "fp16"), "one of 'fp32', 'bf16', 'fp16'"),
    ("SOLVER.BATCH_SIZE_PER_GPU", lambda v: v >= 1, "a batch size >= 1"),
    ("SOLVER.ACCUM_STEPS", lambda v: v >= 1, "an integer >= 1"),
    ("SOLVER.CHECKPOINT_PERIOD", lambda v: v >= 0, "a number of iterations >= 0 (0 = final only)"),
    ("SOLVER.MAX_TO_KEEP", lambda v: v >= 0, "an integer >= 0 (0 = keep all)"),
    ("SOLVER.NONFINITE", lambda v: v in ("stop", "skip"), "one of 'stop', 'skip'"),
    ("SOLVER.NONFINITE_BUDGET", lambda v: v >= 0, "an integer >= 0"),
    ("SOLVER.STOP_CHECK_PERIOD", lambda v: v >= 1, "an integer >= 1"),
    ("DATALOADER.NUM_WORKERS", lambda v: v >= 0, "an integer >= 0"),
    ("DATALOADER.PREFETCH_FACTOR", lambda v: v >= 1, "an integer >= 1"),
    ("DATALOADER.SAMPLES_PER_EPOCH", lambda v: v >= 0, "an integer >= 0 (0 = the dataset size)"),
    ("DATALOADER.MAX_BAD_FRACTION", lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
    ("DIST.TIMEOUT_MINUTES", lambda v: v > 0, "a number of minutes > 0"),
    ("MODEL.MASK.RATIO", lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    ("PRETRAIN.NUM_MASKS", lambda v: not isinstance(v, bool) and int(v) == v >= 1, "an integer >= 1"),
    ("MODEL.ENCODER.DROP_PATH", lambda v: 0 <= v < 1, "a rate in [0, 1)"),
    ("MODEL.HEAD.NUM_CLASSES", lambda v: v >= 1, "a number of classes >= 1"),
    ("MODEL.HEAD.LABEL_SMOOTHING", lambda v: 0 <= v < 1, "a value in [0, 1)"),
    ("MODEL.HEAD.DROPOUT", lambda v: 0 <= v < 1, "a rate in [0, 1)"),
    ("MODEL.HEAD.LOSS", lambda v: str(v).lower() in ("ce", "bce"), "one of 'ce', 'bce'"),
    ("MODEL.QUANTIZER.NUM_LEVELS", lambda v: v >= 1, "an integer >= 1"),
    ("MODEL.QUANTIZER.CODEBOOK_SIZE", lambda v: v >= 1, "an integer >= 1"),
    ("MODEL.QUANTIZER.CODE_DIM", lambda v: v >= 1, "an integer >= 1"),
    ("MODEL.QUANTIZER.DECAY", lambda v: 0 <= v <= 1, "a decay in [0, 1]"),
    ("MODEL.PATCH_EMBED.IN_CHANS", lambda v: v >= 1, "an integer >= 1"),
    ("MODEL.PATCH_EMBED.INPUT_SIZE", lambda v: len(v) >= 1 and all(int(x) >= 1 for x in v), "sizes >= 1"),
    ("MODEL.PATCH_EMBED.PATCH_SIZE", lambda v: len(v) >= 1 and all(int(x) >= 1 for x in v), "sizes >= 1"),
    ("TEST.BATCH_SIZE_PER_GPU", lambda v: v >= 1, "a batch size >= 1"),
    ("TEST.EVAL_PERIOD", lambda v: v >= 0, "a number of iterations >= 0 (0 = only at the end)"),
]


def config_errors(cfg, where: str = "") -> List[str]:
    """Every range error of ``cfg`` as 'KEY = value: expected ...' lines."""
    errors = []
    for key, ok, expected in _RULES:
        value = _get(cfg, key)
        if value is _MISSING:
            continue
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            errors.append(f"{where}{key} = {value!r}: expected {expected}.")
    return errors


def validate_config(cfg, where: str = "") -> None:
    """Raise :class:`ConfigValueError` listing every out-of-range key of ``cfg``."""
    errors = config_errors(cfg, where)
    if not errors and "TRAINER" in cfg and cfg.TRAINER.NAME != "schedule":  # (a schedule checks its phases)
        warmup_error, _ = warmup_problems(cfg)  # lengths in one unit; the trainer checks the rest
        if warmup_error:
            errors.append(warmup_error)
    if errors:
        raise invalid_config(errors)


def schedule_order_errors(schedule: List[str], has_weights: bool) -> List[str]:
    """Phase-order errors: an 'encoder' phase needs a trained tokenizer before it, a
    'tokenizer' phase a trained encoder (its frozen teacher), unless MODEL.WEIGHTS gives one."""
    errors = []
    for k, name in enumerate(schedule):
        before = schedule[:k]
        if name == "encoder" and not has_weights and not any(p in ("tokenizer", "joint") for p in before):
            errors.append(
                f"PRETRAIN.SCHEDULE = {list(schedule)}: phase {k + 1} 'encoder' needs a trained tokenizer; "
                "expected a 'tokenizer' (or 'joint') phase before it, 'encoder_cold' instead, or "
                "MODEL.WEIGHTS with a trained tokenizer."
            )
        if (
            name == "tokenizer"
            and not has_weights
            and not any(p in ("encoder_cold", "encoder", "joint") for p in before)
        ):
            errors.append(
                f"PRETRAIN.SCHEDULE = {list(schedule)}: phase {k + 1} 'tokenizer' needs a trained encoder "
                "(its frozen teacher); expected an 'encoder_cold' (or 'encoder' / 'joint') phase before it, "
                "or MODEL.WEIGHTS with a pretrained encoder."
            )
    return errors


# What a trained tokenizer is and how it maps a patch to codes (training-only settings such as
# the EMA decay or dead-code restart, and the targets' precision, may differ between phases).
_TOKENIZER_DEFINING = (
    "MODEL.QUANTIZER.NAME",
    "MODEL.QUANTIZER.NUM_LEVELS",
    "MODEL.QUANTIZER.CODEBOOK_SIZE",
    "MODEL.QUANTIZER.CODE_DIM",
    "MODEL.QUANTIZER.LOOKUP",
    "MODEL.TOKENIZER.NAME",
    "MODEL.TOKENIZER.SIZE",
    "MODEL.TOKENIZER.EMBED_DIM",
    "MODEL.TOKENIZER.DEPTH",
    "MODEL.TOKENIZER.NUM_HEADS",
)


def _tokenizer_keys(pcfg) -> dict:
    return {key: _get(pcfg, key) for key in _TOKENIZER_DEFINING}


def tokenizer_mismatch_errors(phase_cfgs) -> List[str]:
    """An 'encoder' phase predicts the codes of the tokenizer the last 'tokenizer' / 'joint' phase
    before it trained, so it must build the same tokenizer: per-phase OPTS that change
    the quantizer or tokenizer (e.g. a larger codebook after the cold start) must be given to both."""
    errors, last = [], None
    for k, name, pcfg in phase_cfgs:
        if name in ("tokenizer", "joint"):
            last = (k, name, _tokenizer_keys(pcfg))
        elif name == "encoder" and last is not None:
            mine = _tokenizer_keys(pcfg)
            diff = [
                f"{key}: {last[2][key]!r} in phase {last[0] + 1} vs {mine[key]!r}"
                for key in sorted(mine)
                if mine[key] != last[2].get(key)
            ]
            if diff:
                errors.append(
                    f"phase {k + 1} 'encoder' predicts the codes of the tokenizer trained in phase {last[0] + 1} "
                    f"'{last[1]}' but builds another one ({'; '.join(diff)}); expected the same "
                    f"MODEL.QUANTIZER / MODEL.TOKENIZER settings in PRETRAIN.PHASES.{last[1].upper()}.OPTS and "
                    "PRETRAIN.PHASES.ENCODER.OPTS."
                )
    return errors


# ---------------------------------------------------------------------------- warm-up vs length
#: A warm-up covering at least this fraction of its run / phase is warned about.
LONG_WARMUP_FRACTION = 0.5


def phase_of(cfg) -> Optional[Tuple[int, str]]:
    """``(k, name)`` when ``cfg`` is the merged config of phase k of its PRETRAIN.SCHEDULE (its
    OUTPUT_DIR is ``<schedule dir>/<k>_<name>``, see bridle.trainers.schedule), else None."""
    m = re.match(r"^(\d+)_(\w+)$", os.path.basename(os.path.normpath(str(cfg.OUTPUT_DIR))))
    schedule = list(cfg.PRETRAIN.SCHEDULE) if "PRETRAIN" in cfg else []
    if m and int(m.group(1)) < len(schedule) and schedule[int(m.group(1))] == m.group(2):
        return int(m.group(1)), m.group(2)
    return None


def _length_terms(cfg, phase: Optional[Tuple[int, str]]):
    """((unit, value, key) of the training length, (unit, value, key) of the warm-up), unit
    "it" or "ep", key the config key the value came from (a PRETRAIN.PHASES key in a phase)."""
    s = cfg.SOLVER
    node = cfg.PRETRAIN.PHASES[phase[1].upper()] if phase is not None else None
    own = f"PRETRAIN.PHASES.{phase[1].upper()}." if phase is not None else ""
    if s.MAX_ITER > 0:
        key = own + "MAX_ITER" if node is not None and node.MAX_ITER > 0 else "SOLVER.MAX_ITER"
        length = ("it", int(s.MAX_ITER), key)
    else:
        key = own + "EPOCHS" if node is not None and node.EPOCHS >= 0 else "SOLVER.EPOCHS"
        length = ("ep", float(s.EPOCHS), key)
    if s.WARMUP_ITERS > 0:
        warm = ("it", int(s.WARMUP_ITERS), "SOLVER.WARMUP_ITERS")
    else:
        key = own + "WARMUP_EPOCHS" if node is not None and node.WARMUP_EPOCHS >= 0 else "SOLVER.WARMUP_EPOCHS"
        warm = ("ep", float(s.WARMUP_EPOCHS), key)
    return length, warm


def warmup_needs_iters_per_epoch(cfg) -> bool:
    """Whether comparing the warm-up with the training length needs the iterations per epoch
    (one is given in epochs, the other in iterations)."""
    length, warm = _length_terms(cfg, None)
    return warm[1] > 0 and length[0] != warm[0]


def warmup_problems(cfg, iters_per_epoch: Optional[int] = None) -> Tuple[Optional[str], Optional[str]]:
    """``(error, warning)`` about the warm-up of ``cfg`` (a run, or a phase of a schedule): an
    error when it is at least as long as the run / phase (unless SOLVER.ALLOW_LONG_WARMUP), a
    warning when it covers at least LONG_WARMUP_FRACTION of it; each names the keys. Lengths are
    compared as DefaultTrainer.schedule_lengths counts them; without ``iters_per_epoch`` only when
    both are given in the same unit (else ``(None, None)``)."""
    phase = phase_of(cfg)
    length, warm = _length_terms(cfg, phase)
    if warm[1] <= 0 or length[1] <= 0:
        return None, None

    def iters(term):
        return term[1] if term[0] == "it" else int(round(term[1] * iters_per_epoch))

    if length[0] == warm[0]:
        total, wu, unit = length[1], warm[1], "iterations" if length[0] == "it" else "epochs"
    elif iters_per_epoch:
        total, wu, unit = iters(length), iters(warm), "iterations"
    else:
        return None, None
    if total <= 0:
        return None, None

    def shown(term, n):
        if term[0] == "it" or unit == "epochs":
            return f"{term[2]} = {term[1]:g}"
        epochs = f"{term[1]:g} epoch{'' if term[1] == 1 else 's'}"
        return f"{term[2]} = {epochs} = {n} iterations at {iters_per_epoch} iterations/epoch"

    prefix = f"phase {phase[0] + 1} '{phase[1]}': " if phase is not None else ""
    span = "phase" if phase is not None else "run"
    warm_s = f"{wu:g} {unit}: {shown(warm, wu)}"
    total_s = f"{total:g} {unit}: {shown(length, total)}"
    if wu >= total:
        if bool(cfg.SOLVER.get("ALLOW_LONG_WARMUP", False)):
            return None, (
                f"{prefix}the warm-up ({warm_s}) covers the whole {span} ({total_s}); allowed by "
                "SOLVER.ALLOW_LONG_WARMUP."
            )
        return (
            f"{prefix}the warm-up ({warm_s}) is not shorter than the {span} ({total_s}), so the learning "
            f"rate never reaches its peak; expected a shorter warm-up (lower {warm[2]}) or a longer {span} "
            f"(raise {length[2]}), or SOLVER.ALLOW_LONG_WARMUP True to run it anyway."
        ), None
    if wu >= LONG_WARMUP_FRACTION * total:
        return None, (
            f"{prefix}the warm-up ({warm_s}) covers {100.0 * wu / total:.0f}% of the {span} ({total_s}); "
            f"the learning rate peaks late and decays over the last {100.0 * (total - wu) / total:.0f}% "
            f"only (lower {warm[2]} or raise {length[2]})."
        )
    return None, None


def validate_schedule(cfg, phase_config: Callable, phase_names: Optional[List[str]] = None) -> None:
    """Validate a schedule before its first phase: names, order, and each phase's merged
    config (``phase_config(cfg, k, name, weights)``)."""
    schedule = list(cfg.PRETRAIN.SCHEDULE)
    errors: List[str] = []
    phase_cfgs = []
    if not schedule:
        errors.append("PRETRAIN.SCHEDULE = []: expected at least one phase.")
    for k, name in enumerate(schedule):
        if phase_names is not None and name not in phase_names:
            errors.append(
                f"PRETRAIN.SCHEDULE = {schedule}: entry {k + 1} '{name}' is not a phase; "
                f"expected one of {sorted(phase_names)}."
            )
            continue
        where = f"phase {k + 1} '{name}' (PRETRAIN.PHASES.{name.upper()}): "
        try:
            pcfg = phase_config(cfg, k, name, cfg.MODEL.WEIGHTS)
        except (ConfigError, KeyError, ValueError, TypeError, AssertionError) as e:
            msg = e.args[0] if e.args else str(e)
            errors.append(f"{where}its OPTS / settings do not merge: {msg}")
            continue
        errors.extend(config_errors(pcfg, where))
        warmup_error, _ = warmup_problems(pcfg)  # same units; the trainer checks the rest
        if warmup_error:
            errors.append(warmup_error)
        phase_cfgs.append((k, name, pcfg))
    if not errors:
        errors.extend(schedule_order_errors(schedule, bool(cfg.MODEL.WEIGHTS)))
    if not errors:
        errors.extend(tokenizer_mismatch_errors(phase_cfgs))
    if errors:
        raise invalid_config(errors)
