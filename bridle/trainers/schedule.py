"""TRAINER "schedule": the whole interleaved BRIDLE run in one command.

``PRETRAIN.SCHEDULE`` lists phases (any length), e.g. ["encoder_cold", "tokenizer", "encoder"].
Phase k runs in ``OUTPUT_DIR/<k>_<phase>/`` with its own solver settings
(``PRETRAIN.PHASES.<PHASE>``) and starts from phase k-1's ``model_final.pth`` by the hand-over
rules of :mod:`bridle.trainers.pretrain`. With ``--resume``, finished phases are skipped and
the running one resumes from its last checkpoint.

Every phase's config (with its PRETRAIN.PHASES settings and OPTS) and the phase order are
validated before the first phase starts. A phase counts as finished only when its
``phase_done`` marker exists, written after its ``model_final.pth`` was completely (atomically)
saved. Phase k trains with SEED derived from (SEED, k), so a phase restarted from scratch
starts from the same initial weights and data order.
"""

import gc
import logging
import os

import torch

from bridle.checkpoint.io import atomic_write_text
from bridle.config.config import ConfigValueError, flatten_cfg
from bridle.config.validate import validate_schedule
from bridle.engine import signals
from bridle.registry import TRAINER
from bridle.utils import comm
from bridle.utils.seed import derive_seed

logger = logging.getLogger("bridle.schedule")

# schedule entry -> (TRAINER entry, cold-start tokenizer)
PHASE_TRAINERS = {
    "encoder_cold": ("encoder", True),
    "encoder": ("encoder", False),
    "tokenizer": ("tokenizer", False),
    "joint": ("joint", False),
}
_SOLVER_KEYS = {
    "EPOCHS": "EPOCHS",
    "MAX_ITER": "MAX_ITER",
    "WARMUP_EPOCHS": "WARMUP_EPOCHS",
    "BASE_LR": "BASE_LR",
    "WEIGHT_DECAY": "WEIGHT_DECAY",
}


PHASE_DONE = "phase_done"
# Keys a finished phase may have run with differently and still be reused on --resume.
RESUME_IGNORED_KEYS = ("OUTPUT_DIR", "DATALOADER.NUM_WORKERS", "LOG_PERIOD", "SOLVER.ALLOW_LONG_WARMUP")


def _ignored_for(name: str):
    """What a finished phase ``name`` may differ in: RESUME_IGNORED_KEYS, the schedule list and
    the other phases' PRETRAIN.PHASES settings (a later phase changed does not make it stale), and
    TEST.ONLINE_PROBE (the online probes leave training unchanged)."""
    own = f"PRETRAIN.PHASES.{name.upper()}."
    return lambda key: (
        key in RESUME_IGNORED_KEYS
        or key.startswith("TEST.ONLINE_PROBE.")
        or key == "PRETRAIN.SCHEDULE"
        or (key.startswith("PRETRAIN.PHASES.") and not key.startswith(own))
    )


def config_changes(saved_yaml: str, pcfg, name: str = "") -> list:
    """``["KEY: saved -> now", ...]`` for every key (but those :func:`_ignored_for` phase ``name``
    lists) in which the config a finished phase saved (``saved_yaml``) differs from ``pcfg``; MODEL.WEIGHTS
    compares as an absolute path, relative to the schedule directory when inside it.
    A key the saved config lacks counts only when its value now is not its default (keys added
    by a later version keep the old behaviour at their defaults). A saved config that cannot be
    parsed is reported as one change; a missing one (a phase directory written by hand or by an
    older version) cannot be checked: no change, a warning."""
    import yaml

    if not os.path.isfile(saved_yaml):
        logger.warning(f"{saved_yaml} is missing: cannot check that the finished phase ran this config.")
        return []
    try:
        with open(saved_yaml) as f:
            saved = flatten_cfg(yaml.safe_load(f) or {})
    except (OSError, yaml.YAMLError) as e:
        return [f"{saved_yaml}: unreadable ({e})"]
    now = flatten_cfg(yaml.safe_load(pcfg.dump()))

    def norm(cfg_flat, key, v):
        """Absolute paths; a path inside the run's schedule directory (the phase dir's parent,
        e.g. the previous phase's checkpoint as MODEL.WEIGHTS) relative to it, so that a run
        directory copied or moved elsewhere still resumes."""
        if key == "MODEL.WEIGHTS" and isinstance(v, str) and v:
            v = os.path.abspath(v)
            root = os.path.dirname(os.path.abspath(str(cfg_flat.get("OUTPUT_DIR", "")) or "."))
            if v.startswith(root + os.sep):
                return "<run dir>/" + os.path.relpath(v, root)
        return v

    ignored = _ignored_for(name)
    defaults = None
    changes = []
    for key in sorted(set(saved) | set(now)):
        if ignored(key):
            continue
        if key not in saved:
            # A key the saved config lacks was added by a later version of Bridle (or a plugin):
            # at its default it keeps the behaviour the phase ran with, so it is no change.
            if defaults is None:
                from bridle.config import get_cfg

                defaults = flatten_cfg(yaml.safe_load(get_cfg().dump()))
            if key in defaults and now[key] == defaults[key]:
                continue
        a, b = norm(saved, key, saved.get(key, "<absent>")), norm(now, key, now.get(key, "<absent>"))
        if a != b:
            changes.append(f"{key}: {a!r} -> {b!r}")
    return changes


def stale_finished_phases(cfg) -> list:
    """``[(phase dir, changes)]`` for the finished phases of ``cfg``'s schedule whose saved
    config differs from what the schedule would run now (what ``--resume`` refuses to reuse)."""
    stale, weights = [], cfg.MODEL.WEIGHTS
    for k, name in enumerate(cfg.PRETRAIN.SCHEDULE):
        pcfg = phase_config(cfg, k, name, weights)
        final = os.path.join(pcfg.OUTPUT_DIR, "model_final.pth")
        if not (os.path.isfile(os.path.join(pcfg.OUTPUT_DIR, PHASE_DONE)) and os.path.isfile(final)):
            break
        changes = config_changes(os.path.join(pcfg.OUTPUT_DIR, "config.yaml"), pcfg, name)
        if changes:
            stale.append((pcfg.OUTPUT_DIR, changes))
        weights = final
    return stale


def phase_dir(cfg, k: int, name: str) -> str:
    return os.path.join(cfg.OUTPUT_DIR, f"{k}_{name}")


def phase_config(cfg, k: int, name: str, init_weights: str):
    """The config of phase ``k`` (``name``): the run's config with the phase's solver settings
    and OPTS applied, its own OUTPUT_DIR and the weights it starts from."""
    if name not in PHASE_TRAINERS:
        raise ConfigValueError(
            f"PRETRAIN.SCHEDULE entry '{name}' is not a phase; expected one of {sorted(PHASE_TRAINERS)}."
        )
    trainer, cold = PHASE_TRAINERS[name]
    pcfg = cfg.clone()
    pcfg.defrost()
    node = cfg.PRETRAIN.PHASES[name.upper()]
    for key, solver_key in _SOLVER_KEYS.items():
        value = node[key]
        if value >= 0:
            pcfg.SOLVER[solver_key] = type(pcfg.SOLVER[solver_key])(value)
    if node.MAX_ITER < 0 and node.EPOCHS >= 0:
        pcfg.SOLVER.MAX_ITER = 0  # the phase gives epochs: they win over an inherited MAX_ITER
    if node.OPTS:
        pcfg.merge_from_list(list(node.OPTS))
    pcfg.TRAINER.NAME = trainer
    pcfg.MODEL.TOKENIZER.COLD_START = cold
    pcfg.MODEL.WEIGHTS = init_weights
    pcfg.OUTPUT_DIR = phase_dir(cfg, k, name)
    if cfg.SEED >= 0:
        pcfg.SEED = derive_seed(cfg.SEED, "phase", k)
    pcfg.freeze()
    return pcfg


def _agreed_stop_request():
    """The pending stop request, agreed by every rank (between phases; one small all-reduce)."""
    reason = signals.stop_requested()
    if comm.get_world_size() == 1:
        return reason
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = comm.all_reduce_(torch.tensor([1 if reason else 0], device=dev), "sum")
    return (reason or "stop requested on another rank") if int(flag.item()) > 0 else None


@TRAINER.register(name="schedule")
class ScheduleRunner:
    """Runs PRETRAIN.SCHEDULE phase after phase (same API as a trainer)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.schedule = list(cfg.PRETRAIN.SCHEDULE)
        if not self.schedule:
            raise ConfigValueError("PRETRAIN.SCHEDULE is empty: nothing to run.")
        # Validate every phase (names, order, merged configs) before spending compute.
        validate_schedule(cfg, phase_config, list(PHASE_TRAINERS))
        self.resume = False

    def resume_or_load(self, resume: bool = True) -> None:
        self.resume = resume

    @classmethod
    def eval_only(cls, cfg):
        raise ConfigValueError("TRAINER.NAME 'schedule' is pretraining; --eval-only applies to finetune/linear_probe.")

    def check_warmups(self) -> None:
        """Before the first phase: the warm-up of every phase still to run against its length.
        validate_schedule compared those given in one unit; a phase that gives one in epochs and
        the other in iterations needs the iterations per epoch, i.e. its training set's size
        (built here, once per distinct DATASETS config)."""
        from bridle.config.validate import invalid_config, warmup_needs_iters_per_epoch, warmup_problems
        from bridle.data.build import iters_per_epoch

        weights, sizes, errors = self.cfg.MODEL.WEIGHTS, {}, []
        for k, name in enumerate(self.schedule):
            pcfg = phase_config(self.cfg, k, name, weights)
            weights = os.path.join(pcfg.OUTPUT_DIR, "model_final.pth")
            finished = os.path.isfile(os.path.join(pcfg.OUTPUT_DIR, PHASE_DONE)) and os.path.isfile(weights)
            if (self.resume and finished) or not warmup_needs_iters_per_epoch(pcfg):
                continue
            epoch_len = int(pcfg.DATALOADER.SAMPLES_PER_EPOCH)
            if not epoch_len:
                key = pcfg.DATASETS.dump()
                if key not in sizes:
                    sizes[key] = len(TRAINER.get(pcfg.TRAINER.NAME).build_train_dataset(pcfg))
                epoch_len = sizes[key]
            error, _ = warmup_problems(pcfg, iters_per_epoch(pcfg, epoch_len))
            if error:
                errors.append(error)
        if errors:
            raise invalid_config(errors)

    def train(self) -> dict:
        self.check_warmups()
        weights = self.cfg.MODEL.WEIGHTS
        for k, name in enumerate(self.schedule):
            pcfg = phase_config(self.cfg, k, name, weights)
            final = os.path.join(pcfg.OUTPUT_DIR, "model_final.pth")
            done = os.path.join(pcfg.OUTPUT_DIR, PHASE_DONE)
            if self.resume and os.path.isfile(done) and os.path.isfile(final):
                changes = config_changes(os.path.join(pcfg.OUTPUT_DIR, "config.yaml"), pcfg, name)
                if changes:
                    shown = "; ".join(changes[:8]) + (f"; ... ({len(changes)} keys)" if len(changes) > 8 else "")
                    raise ConfigValueError(
                        f"--resume: phase {k + 1}/{len(self.schedule)} ({name}) in {pcfg.OUTPUT_DIR} finished with "
                        f"another config than this run's ({shown}). Reusing it would mix two experiments: "
                        "use a new OUTPUT_DIR, start afresh with --overwrite, or move that phase directory (and the "
                        "later ones) away."
                    )
                logger.info(f"Phase {k + 1}/{len(self.schedule)} ({name}) already finished: {final}")
                weights = final
                continue
            reason = _agreed_stop_request()
            if reason:
                raise signals.TrainingInterrupted(reason)
            logger.info(f"=== Phase {k + 1}/{len(self.schedule)}: {name} -> {pcfg.OUTPUT_DIR}")
            if comm.is_main_process():
                atomic_write_text(os.path.join(pcfg.OUTPUT_DIR, "config.yaml"), pcfg.dump(), "config")
            trainer = TRAINER.get(pcfg.TRAINER.NAME)(pcfg)
            trainer.resume_or_load(resume=self.resume)
            trainer.train()
            comm.synchronize()
            if comm.is_main_process():  # model_final.pth is complete (atomic write): mark the phase done
                atomic_write_text(done, "model_final.pth\n", "phase marker")
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            comm.synchronize()
            weights = final
        logger.info(f"Schedule finished; last checkpoint {weights}")
        return {"final_checkpoint": weights}
