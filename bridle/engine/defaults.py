"""The pieces every run shares: argument parser, setup, and DefaultTrainer, whose build
steps are overridable classmethods (detectron2's shape)."""

import argparse
import errno
import logging
import os
import re
import weakref
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fvcore.common.checkpoint import Checkpointer
from iopath.common.file_io import PathManager
from torch.nn.parallel import DistributedDataParallel

from bridle.checkpoint.io import CheckpointError, atomic_save, atomic_write_text, load_checkpoint_file
from bridle.config.config import ConfigValueError
from bridle.data.batch import device_transform_of
from bridle.data.build import (
    build_batch_transforms,
    build_dataset,
    build_train_loader,
    iters_per_epoch,
)
from bridle.errors import OutputDirError
from bridle.solver import WarmupCosineSchedule, build_optimizer
from bridle.utils import comm
from bridle.utils.logger import setup_logger
from bridle.utils.seed import seed_everything, seed_from_clock, set_rng_state

from . import hooks
from .events import ConsoleWriter, JSONWriter, TensorboardWriter
from .lock import acquire_output_dir_lock
from .train_loop import BadDataError, SimpleTrainer

logger = logging.getLogger("bridle.engine")


def default_argument_parser(description: str = "Bridle training") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  python tools/train_net.py --config-file configs/<modality>/pretrain_rq.yaml\n"
        "  python tools/train_net.py --config-file cfg.yaml --num-gpus 8 SOLVER.BASE_LR 1e-4\n"
        "  torchrun --nproc-per-node 8 tools/train_net.py --config-file cfg.yaml",
    )
    p.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="resume from the last checkpoint in OUTPUT_DIR")
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an OUTPUT_DIR that holds a run, deleting that run's checkpoints, metrics, "
        "logs and phase directories (without --resume or --overwrite such a directory is refused)",
    )
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="only evaluate MODEL.WEIGHTS (writes eval_results.json and config_eval.yaml)",
    )
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    p.add_argument("--num-machines", type=int, default=1, help="total machines")
    p.add_argument("--machine-rank", type=int, default=0, help="rank of this machine")
    p.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 (auto on one machine)")
    p.add_argument("--list", action="store_true", help="print every registry with its entries and exit")
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too (same as BRIDLE_DEBUG=1)"
    )
    p.add_argument(
        "--unsafe-legacy-checkpoint",
        action="store_true",
        help="UNSAFE: allow checkpoints that pickle arbitrary objects (runs code from the file; "
        "trusted legacy files only; same as BRIDLE_TRUST_PICKLE=1)",
    )
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def resolve_device(cfg) -> torch.device:
    dev = cfg.MODEL.DEVICE
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigValueError(
                f"MODEL.DEVICE = '{cfg.MODEL.DEVICE}' asks for cuda but no CUDA device is available; "
                "expected 'cpu' or 'auto' on this machine."
            )
        if dev == "cuda":
            return torch.device("cuda", torch.cuda.current_device())
    return torch.device(dev)


def seed_all(seed: int) -> int:
    """Seed every global generator with ``seed`` (one from the clock when < 0) plus this
    process's rank; returns the seed used."""
    if seed < 0:
        seed = seed_from_clock()
    seed += comm.get_rank()
    seed_everything(seed)
    return seed


def _fail_loudly_on_write_errors(log: logging.Logger) -> None:
    """A file handler that cannot write (disk full, permissions) stops the run with an error
    naming the file, instead of logging's default of printing a traceback and going on."""
    for h in log.handlers:
        if isinstance(h, logging.FileHandler) and not getattr(h, "_bridle_strict", False):
            path = h.baseFilename

            def handle_error(record, path=path):
                import sys

                exc = sys.exc_info()[1]
                raise OSError(getattr(exc, "errno", None), f"Cannot write the log file '{path}': {exc}") from exc

            h.handleError = handle_error
            h._bridle_strict = True


def make_output_dir(out: str) -> None:
    """Create OUTPUT_DIR; an OUTPUT_DIR that cannot be one (a file, no permission) is a user
    error naming it."""
    if "://" in out:
        PathManager().mkdirs(out)
        return
    if not out:
        raise OutputDirError(
            "OUTPUT_DIR is empty; expected a directory for checkpoints, metrics and logs.", errno.EINVAL
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputDirError(
            f"OUTPUT_DIR '{out}' is a file; expected a directory (or a path where one can be created).", errno.ENOTDIR
        )
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise OutputDirError(
            f"OUTPUT_DIR '{out}' cannot be created ({e.strerror or e}); expected a directory "
            "this user can create and write.",
            e.errno or errno.EACCES,
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"OUTPUT_DIR '{out}' is not writable by this user; expected a writable directory.", errno.EACCES
        )


# What a training run leaves in its OUTPUT_DIR (and a schedule in each phase directory).
_RUN_EVIDENCE = re.compile(r"^(model_.*\.pth|last_checkpoint)$")
_PHASE_DIR = re.compile(r"^\d+_\w+$")
_SCHEDULE_PHASE_DIR = re.compile(r"^\d+_(encoder_cold|encoder|tokenizer|joint)$")  # bridle.trainers.schedule
_RUN_OUTPUTS = re.compile(
    r"^(model_.*\.pth|last_checkpoint|metrics\.json|config\.yaml|log\.txt(\.rank\d+)?|tb|final_results\.json|"
    r"phase_done|\..*\.tmp\d+)$"
)


def existing_run(out_dir: str) -> List[str]:
    """What in ``out_dir`` belongs to an earlier training run, as paths relative to it:
    checkpoints (``model_*.pth``, ``last_checkpoint``) and a ``metrics.json`` with rows, in
    OUTPUT_DIR or in the phase directories ``<k>_<phase>/`` of a schedule. A directory holding
    only a config.yaml / log.txt (a run that stopped before its first step) holds no run."""

    def scan(d: str, prefix: str) -> List[str]:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return []
        ckpts, other = [], []
        for n in names:
            p = os.path.join(d, n)
            if _RUN_EVIDENCE.match(n) and os.path.isfile(p):
                (other if n == "last_checkpoint" else ckpts).append(prefix + n)
            elif n == "metrics.json" and os.path.isfile(p) and os.path.getsize(p) > 0:
                other.insert(0, prefix + n)
        return sorted(ckpts, reverse=True) + other  # newest checkpoint first

    found = scan(out_dir, "")
    if os.path.isdir(out_dir):
        for n in sorted(os.listdir(out_dir)):
            if _PHASE_DIR.match(n) and os.path.isdir(os.path.join(out_dir, n)):
                found += scan(os.path.join(out_dir, n), n + "/")
    return found


def _listed(items: List[str], at_most: int = 4) -> str:
    shown = ", ".join(items[:at_most])
    return shown + (f", ... ({len(items)} in all)" if len(items) > at_most else "")


def remove_previous_run(out_dir: str) -> List[str]:
    """``--overwrite``: delete the files a training run wrote in ``out_dir`` (checkpoints,
    last_checkpoint, metrics.json, config.yaml, log files, tb/, final_results.json and the
    phase directories of a schedule); anything else (the lock, a submitit folder, the user's
    own files) stays. Returns what was removed."""
    import shutil

    removed = []
    for n in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, n)
        phase = _SCHEDULE_PHASE_DIR.match(n) and os.path.isdir(p)
        if not (phase or _RUN_OUTPUTS.match(n)):
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
        removed.append(n + ("/" if phase or n == "tb" else ""))
    return removed


def check_output_dir(cfg, args) -> Optional[str]:
    """Refuse to start a training run (no --resume) in an OUTPUT_DIR that holds another run; with
    --overwrite delete that run's files (main process) and return what was done, for the log.
    Eval-only runs and resumed runs are not checked."""
    if args is None or getattr(args, "eval_only", False) or getattr(args, "resume", False):
        return None
    out = cfg.OUTPUT_DIR
    if getattr(args, "overwrite", False):
        removed = remove_previous_run(out) if comm.is_main_process() else []
        comm.synchronize()  # the other ranks write their log files only once it is done
        return (
            f"--overwrite: removed the previous run's files from OUTPUT_DIR '{out}': {_listed(removed, 8)}"
            if removed
            else None
        )
    found = existing_run(out)
    if found:
        raise OutputDirError(
            f"OUTPUT_DIR '{out}' already holds a run ({_listed(found)}): continue it with --resume, or start "
            "afresh with another OUTPUT_DIR or with --overwrite (which deletes that run's files)."
        )
    return None


def default_setup(cfg, args=None) -> None:
    """Output dir (locked against a second run; a training run without ``--resume`` refuses one
    that holds another run unless ``--overwrite``), logging, merged config dump, seeding."""
    rank = comm.get_rank()
    out = cfg.OUTPUT_DIR
    make_output_dir(out)
    if comm.is_main_process():
        acquire_output_dir_lock(out)
    overwritten = check_output_dir(cfg, args)
    setup_logger(out, rank, name="bridle")
    for plugin in sorted(_plugin_names()):
        setup_logger(out, rank, name=plugin)
    for name in ["bridle", *_plugin_names()]:
        _fail_loudly_on_write_errors(logging.getLogger(name))
    logger.info(f"Rank {rank} of {comm.get_world_size()}; torch {torch.__version__}")
    if args is not None:
        logger.info(f"Command line arguments: {vars(args)}")
    if overwritten:
        logger.warning(overwritten)
    if comm.is_main_process():
        # An evaluation never replaces the config.yaml of the training run in the same directory.
        eval_only = args is not None and getattr(args, "eval_only", False)
        path = os.path.join(out, "config_eval.yaml" if eval_only else "config.yaml")
        atomic_write_text(path, cfg.dump(), "config")
        logger.info(f"Full config saved to {path}")
    seed = seed_all(cfg.SEED)
    logger.info(f"Seed {seed}")
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)


def _plugin_names() -> List[str]:
    from bridle.plugins import loaded_plugins

    return [m.__name__.split(".")[0] for m in loaded_plugins().values()]


def create_ddp_model(model: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
    if comm.get_world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    # Quantizers keep their buffers identical themselves (all-reduce at forward time).
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False, find_unused_parameters=find_unused)


_CKPT_FILE = re.compile(r"^model_(\d{7}|final)\.pth$")


class TrainerCheckpointer(Checkpointer):
    """fvcore's Checkpointer; saves only on the main process, and stores the run's config
    (YAML text under key ``cfg``) in every checkpoint so tools can rebuild the model.

    Files are read through :func:`bridle.checkpoint.load_checkpoint_file` (``weights_only``),
    and written atomically (checkpoint first, then the ``last_checkpoint`` pointer), so a kill
    at any moment leaves a loadable newest checkpoint; :meth:`load_latest` falls back to older
    checkpoints when the newest cannot be read."""

    def __init__(self, model, save_dir, cfg=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=comm.is_main_process(), **checkpointables)
        self.cfg_text = cfg.dump() if cfg is not None else None

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if self.cfg_text is not None:
            kwargs.setdefault("cfg", self.cfg_text)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        atomic_save(data, path)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename, "checkpoint pointer")

    def _load_file(self, f: str) -> dict:
        return load_checkpoint_file(f)

    def candidate_files(self) -> List[str]:
        """Checkpoints to resume from, newest first: the ``last_checkpoint`` target, then
        ``model_final.pth`` and ``model_NNNNNNN.pth`` by decreasing iteration."""
        d = self.save_dir
        if not d or not os.path.isdir(d):
            return []
        files = [f for f in os.listdir(d) if _CKPT_FILE.match(f)]
        files.sort(key=lambda f: (1, 0) if f == "model_final.pth" else (0, int(f[6:13])), reverse=True)
        out = [os.path.join(d, f) for f in files]
        pointer = self.get_checkpoint_file() if os.path.exists(os.path.join(d, "last_checkpoint")) else ""
        if pointer and os.path.isfile(pointer):
            out = [pointer] + [p for p in out if p != pointer]
        return out

    def has_checkpoint(self) -> bool:
        return bool(self.candidate_files())

    def load_latest(self, checkpointables=None) -> Optional[str]:
        """Load the newest checkpoint that loads; returns its path (None when none does).
        Every unreadable newer file is reported."""
        for path in self.candidate_files():
            try:
                self.load(path, checkpointables=checkpointables)
                return path
            except (CheckpointError, EOFError, KeyError) as e:
                logger.warning(f"Cannot resume from {path} ({e}); falling back to the previous checkpoint.")
        return None


class DefaultTrainer(SimpleTrainer):
    """Builds everything from a config. Subclasses override the classmethods.

    ``mode`` is the dataset mode of the training data ("pretrain", "finetune", ...).
    Batch transforms (INPUT.BATCH_TRANSFORMS) are applied only when ``use_batch_transforms``."""

    mode = "pretrain"
    use_batch_transforms = False

    def __init__(self, cfg) -> None:
        from bridle.config.validate import validate_config

        validate_config(cfg)
        self.cfg = cfg
        device = resolve_device(cfg)
        # Every RNG starts from SEED here: a phase (re)started from scratch builds the same
        # initial weights, whatever ran before it in this process.
        seed_all(cfg.SEED)
        model = self.build_model(cfg)
        model.to(device)
        self.train_dataset = self.build_train_dataset(cfg)
        epoch_len = int(cfg.DATALOADER.SAMPLES_PER_EPOCH) or len(self.train_dataset)
        self.iters_per_epoch = iters_per_epoch(cfg, epoch_len)
        max_iter, warmup = self.schedule_lengths(cfg, self.iters_per_epoch)
        self.check_warmup(cfg, self.iters_per_epoch)
        optimizer = self.build_optimizer(cfg, model)
        ddp = create_ddp_model(model, device, find_unused=getattr(model, "ddp_find_unused_parameters", False))
        transforms = build_batch_transforms(cfg, self.mode) if self.use_batch_transforms else []
        if cfg.INPUT.BATCH_TRANSFORMS and not self.use_batch_transforms:
            logger.warning(
                f"INPUT.BATCH_TRANSFORMS {list(cfg.INPUT.BATCH_TRANSFORMS)} are NOT applied by {type(self).__name__}: "
                "only the 'finetune' trainer applies batch transforms (pretraining and linear probing never do)."
            )
        runnable = torch.compile(ddp) if cfg.SOLVER.COMPILE else ddp
        super().__init__(
            runnable,
            None,
            optimizer,
            precision=cfg.SOLVER.PRECISION,
            accum_steps=cfg.SOLVER.ACCUM_STEPS,
            clip_grad=cfg.SOLVER.CLIP_GRAD,
            batch_transforms=transforms,
            device=device,
            # the dataset's own batch transform on the device (e.g. features computed there),
            # applied before the batch transforms (bridle.data.prepare_batch)
            dataset_transform=device_transform_of(self.train_dataset),
            nonfinite=str(cfg.SOLVER.NONFINITE),
            nonfinite_budget=int(cfg.SOLVER.NONFINITE_BUDGET),
            max_bad_fraction=float(cfg.DATALOADER.MAX_BAD_FRACTION),
        )
        self.model_without_ddp = model
        self.ddp_model = ddp if isinstance(ddp, DistributedDataParallel) else None
        self.max_iter = max_iter
        self.lr_schedule = WarmupCosineSchedule(cfg.SOLVER.BASE_LR, max_iter, warmup, cfg.SOLVER.MIN_LR)
        self.rng_states: Optional[list] = None
        self.checkpointer = TrainerCheckpointer(
            model, cfg.OUTPUT_DIR, cfg=cfg, optimizer=optimizer, trainer=weakref.proxy(self)
        )
        self.eval_hook: Optional[hooks.EvalHook] = None
        self.register_hooks(self.build_hooks())
        eff = cfg.SOLVER.BATCH_SIZE_PER_GPU * comm.get_world_size() * cfg.SOLVER.ACCUM_STEPS
        logger.info(
            f"{type(self).__name__}: {len(self.train_dataset)} training items, effective batch {eff}, "
            f"{self.iters_per_epoch} iterations/epoch, {max_iter} iterations, {warmup} warmup"
        )

    # -- build steps (override in subclasses)
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def build_train_dataset(cls, cfg):
        return build_dataset(cfg, cfg.DATASETS.TRAIN, "train", cls.mode)

    @classmethod
    def build_train_loader(cls, cfg, dataset, start_iter: int):
        return build_train_loader(cfg, dataset, start_iter)

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def schedule_lengths(cls, cfg, ipe: int):
        s = cfg.SOLVER
        max_iter = int(s.MAX_ITER) if s.MAX_ITER > 0 else int(round(s.EPOCHS * ipe))
        warmup = int(s.WARMUP_ITERS) if s.WARMUP_ITERS > 0 else int(round(s.WARMUP_EPOCHS * ipe))
        if max_iter <= 0:
            raise ConfigValueError(
                f"SOLVER.EPOCHS = {s.EPOCHS:g} / SOLVER.MAX_ITER = {s.MAX_ITER} give zero training iterations "
                f"({ipe} iterations/epoch); expected SOLVER.MAX_ITER > 0 or more SOLVER.EPOCHS."
            )
        return max_iter, min(warmup, max_iter)

    @classmethod
    def check_warmup(cls, cfg, ipe: int) -> None:
        """Before step 1: a warm-up at least as long as the run (or phase) is an error unless
        SOLVER.ALLOW_LONG_WARMUP; one covering half of it or more is warned about."""
        from bridle.config.validate import warmup_problems

        error, warning = warmup_problems(cfg, ipe)
        if error:
            raise ConfigValueError(f"Invalid config: {error}")
        if warning:
            logger.warning(warning)

    @classmethod
    def test(cls, cfg, model: nn.Module) -> Dict[str, float]:
        """Evaluate ``model`` on DATASETS.TEST; pretraining trainers have nothing to report."""
        return {}

    @classmethod
    def eval_only(cls, cfg) -> Dict[str, float]:
        """Build the model, load MODEL.WEIGHTS (strictly reported) and run :meth:`test`."""
        if not cfg.MODEL.WEIGHTS:
            raise ConfigValueError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate); it is empty.")
        model = cls.build_model(cfg).to(resolve_device(cfg))
        cls.load_eval_weights(cfg, model)
        return cls.test(cfg, model)

    @classmethod
    def load_eval_weights(cls, cfg, model: nn.Module) -> None:
        TrainerCheckpointer(model, cfg.OUTPUT_DIR).load(cfg.MODEL.WEIGHTS, checkpointables=[])

    def has_evaluation(self) -> bool:
        return False

    def extra_hooks(self) -> list:
        return []

    def build_hooks(self) -> list:
        cfg = self.cfg
        ckpt = hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_TO_KEEP)
        hs = [
            hooks.StepSeeder(max(int(cfg.SEED), 0)),
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.lr_schedule),
            *self.extra_hooks(),
            ckpt,
        ]
        if self.has_evaluation():
            self.eval_hook = hooks.EvalHook(cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model_without_ddp))
            hs.append(self.eval_hook)
        hs.append(hooks.ProgressBar(cfg.PROGRESS_BAR))
        hs.append(hooks.PeriodicWriter(self.build_writers(), cfg.LOG_PERIOD))
        hs.append(hooks.StopOnRequest(ckpt, cfg.SOLVER.STOP_CHECK_PERIOD))
        return hs

    def build_writers(self) -> list:
        if not comm.is_main_process():
            return []
        out = self.cfg.OUTPUT_DIR
        return [
            ConsoleWriter(self.max_iter),
            JSONWriter(os.path.join(out, "metrics.json")),
            TensorboardWriter(os.path.join(out, "tb")),
        ]

    # -- checkpoint state
    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.rng_states is not None:
            state["rng_states"] = self.rng_states
        state["nonfinite_skipped"] = int(self.nonfinite_skipped)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        rngs = state.get("rng_states")
        if rngs and comm.get_rank() < len(rngs):
            set_rng_state(rngs[comm.get_rank()])

    def load_initial_weights(self, path: str) -> None:
        """Initialise from MODEL.WEIGHTS when not resuming; subclasses map foreign layouts."""
        self.checkpointer.load(path, checkpointables=[])

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint in OUTPUT_DIR, continue from it (model, optimizer,
        scaler, iteration, RNG); otherwise start from MODEL.WEIGHTS (if given)."""
        path = self.checkpointer.load_latest() if resume and self.checkpointer.has_checkpoint() else None
        if resume and path is None and self.checkpointer.has_checkpoint():
            raise CheckpointError(
                f"--resume: no checkpoint in {self.cfg.OUTPUT_DIR} can be loaded "
                f"({', '.join(self.checkpointer.candidate_files())})."
            )
        if path is not None:
            self.start_iter = self.iter + 1
            nxt = (
                f"continuing with {self.start_iter + 1} of {self.max_iter}"
                if self.start_iter < self.max_iter
                else f"all {self.max_iter} done"
            )
            logger.info(f"Resumed from {path} at iteration {self.start_iter} (iterations done; {nxt})")
        else:
            if self.cfg.MODEL.WEIGHTS:
                self.load_initial_weights(self.cfg.MODEL.WEIGHTS)
            self.start_iter = 0

    def train(self) -> Dict[str, float]:
        if self.start_iter >= self.max_iter:
            logger.info(f"Training already complete ({self.start_iter} >= {self.max_iter} iterations).")
            return {}
        self.data_loader = self.build_train_loader(self.cfg, self.train_dataset, self.start_iter)
        self._data_iter = None
        try:
            super().train(self.start_iter, self.max_iter)
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} {self.nonfinite_advice()}") from None
        except BadDataError as e:
            raise BadDataError(f"{str(e).rstrip('.')}. {self.save_after_bad_data()}") from None
        return self.eval_hook.last_results if self.eval_hook is not None else {}

    def save_after_bad_data(self) -> str:
        """The run stopped on DATALOADER.MAX_BAD_FRACTION while fetching the batch of step
        ``self.iter``: save the state after the last completed step (one process; with several
        the ranks stop at different steps and cannot agree on a checkpoint) and say how to go on."""
        fix = "Remove or repair the unreadable items (or raise DATALOADER.MAX_BAD_FRACTION)"
        advice = f"{fix}, then continue with --resume."
        done = self.iter  # steps 0 .. iter-1 completed
        if done <= self.start_iter:
            last = self.last_good_checkpoint()
            if last:
                return f"No step completed in this run; the last checkpoint is {last}. {advice}"
            return f"No step completed and no checkpoint was written. {fix}, then run again."
        ckpt = next((h for h in self._hooks if isinstance(h, hooks.PeriodicCheckpointer)), None)
        if ckpt is None or comm.get_world_size() > 1:
            last = self.last_good_checkpoint()
            return f"Stopped after {done} iterations; the last checkpoint is {last or 'none'}. {advice}"
        self.iter = done - 1  # the state after the last completed step
        self.restore_state_before_step()  # undo the failed step's earlier micro-batches (ACCUM_STEPS > 1)
        try:
            path = ckpt.save_now()
        except (FloatingPointError, OSError) as e:
            return f"Stopped after {done} iterations; no checkpoint could be written ({e}). {advice}"
        finally:
            self.iter = done
        logger.info(f"Wrote {path} (the state after {done} iterations) before stopping on unreadable data.")
        return f"Wrote {path} (the state after {done} iterations). {advice}"

    def last_good_checkpoint(self) -> Optional[str]:
        """The newest checkpoint written (never non-finite: see PeriodicCheckpointer)."""
        files = self.checkpointer.candidate_files()
        return files[0] if files else None

    def nonfinite_advice(self) -> str:
        last = self.last_good_checkpoint()
        where = (
            f"The last good checkpoint is {last}; --resume restarts from it."
            if last
            else "No checkpoint was written yet; a rerun starts from the beginning."
        )
        return (
            f"Training stopped (SOLVER.NONFINITE {self.nonfinite}); no non-finite state was saved. {where} "
            "Try a lower SOLVER.BASE_LR, SOLVER.CLIP_GRAD > 0, SOLVER.PRECISION bf16/fp32, or "
            "SOLVER.NONFINITE skip with a SOLVER.NONFINITE_BUDGET."
        )
