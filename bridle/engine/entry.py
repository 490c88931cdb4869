"""The body of the training entry point (tools/train_net.py): setup -> main -> launch, as in
detectron2's tools/train_net.py, kept in the library so that every launcher that runs a
training (the cross-validation driver, the submitit job, tests) runs exactly this one.

Exit codes of :func:`invoke_main`: 0 done; 2 a user error, printed as one line
``bridle: error: <message>`` (bridle/errors.py); 75 stopped on request with a checkpoint;
1 anything else (a bug: its traceback).
"""

import logging
import os
import sys

from bridle.config import get_cfg
from bridle.config import load_config as load_cfg
from bridle.config.validate import validate_config
from bridle.engine import signals
from bridle.engine.defaults import default_argument_parser, default_setup
from bridle.engine.launch import launch
from bridle.errors import DEBUG_ENV, EXIT_USER_ERROR, missing_file, report_user_error, user_error_message
from bridle.registry import TRAINER, format_registries
from bridle.utils import comm

__all__ = ["check_files", "invoke_main", "load_config", "main", "run", "setup"]

logger = logging.getLogger("bridle")


def load_config(args):
    return load_cfg(args.config_file, args.opts)


def check_files(cfg, args) -> None:
    """Files the run reads first, checked before OUTPUT_DIR is touched."""
    weights = str(cfg.MODEL.WEIGHTS)
    if weights and "://" not in weights and not getattr(args, "resume", False) and not os.path.isfile(weights):
        raise missing_file("MODEL.WEIGHTS", weights, "(expected a checkpoint file)")


def setup(args):
    cfg = load_config(args)
    validate_config(cfg)  # before the lock, config.yaml or any compute
    check_files(cfg, args)
    default_setup(cfg, args)
    return cfg


def main(args):
    """One process's training (or evaluation) run; what :func:`launch` starts on each rank."""
    # SIGTERM / SIGINT / SIGUSR1: stop at the next step boundary with a checkpoint.
    signals.install_stop_handlers()
    cfg = setup(args)
    trainer_cls = TRAINER.get(cfg.TRAINER.NAME)
    if args.eval_only:
        results = trainer_cls.eval_only(cfg)
        logger.info(f"Evaluation results: {results}")
        return results
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    try:
        return trainer.train()
    except signals.TrainingInterrupted as e:
        if comm.is_main_process():
            logger.info(str(e))
            print(f"bridle: {e}", file=sys.stderr, flush=True)
        sys.exit(signals.EXIT_INTERRUPTED)


def invoke_main(argv=None) -> None:
    """Parse the command line (``argv``, default ``sys.argv[1:]``) and :func:`run` it; a user
    error ends the process with one line and exit code 2."""
    parser = default_argument_parser()
    args = parser.parse_args(argv)
    flags = [o for o in (args.opts or []) if o.startswith("--")]
    if flags:
        parser.error(f"flags {flags} must come before the KEY VALUE config overrides")
    if args.overwrite and args.eval_only:
        parser.error("--overwrite starts a training run afresh; --eval-only never touches a run's files")
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # inherited by the spawned ranks
    try:
        run(args)
    except Exception as e:  # one line for a user error; a bug keeps its traceback
        msg = user_error_message(e)
        if msg is None:
            raise
        report_user_error(msg, e)
        sys.exit(EXIT_USER_ERROR)


def run(args) -> None:
    """``--list``, or :func:`main` launched on ``--num-gpus`` x ``--num-machines`` ranks."""
    if args.list:
        get_cfg()  # loads every plugin; each registry imports its core entries itself

        print(format_registries())
        return
    if args.unsafe_legacy_checkpoint:
        from bridle.checkpoint.io import TRUST_PICKLE_ENV

        os.environ[TRUST_PICKLE_ENV] = "1"  # inherited by the spawned ranks
        print(
            f"bridle: WARNING --unsafe-legacy-checkpoint: checkpoints may run code ({TRUST_PICKLE_ENV}=1)",
            file=sys.stderr,
        )
    timeout = (
        float(load_config(args).DIST.TIMEOUT_MINUTES)
        if args.num_gpus * args.num_machines > 1 or "WORLD_SIZE" in os.environ
        else 30.0
    )
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        timeout_minutes=timeout,
    )
