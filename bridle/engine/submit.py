"""Submission of the training entry point (:func:`bridle.engine.entry.main`, what
tools/train_net.py runs) to Slurm, or locally, through submitit, with requeue on time-out.

Every task of the job is one training process: ``--nodes N`` x ``--tasks-per-node`` (default:
``--gpus-per-node``) ranks. ``torch.distributed`` is initialised from the job environment
(submitit's ``JobEnvironment``: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_JOB_NODELIST
-> RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) through
:func:`bridle.engine.launch.export_dist_env` and the env:// path of ``launch``.

Time-out and preemption: Slurm sends ``SIGUSR2`` ``--signal-delay`` seconds before the time
limit (submitit's ``--signal=USR2@...``); SIGTERM / SIGINT / SIGUSR1 work too. The signal only
*requests* a stop (:func:`bridle.engine.signals.request_stop`): every rank finishes the current
step, the trainer writes a checkpoint and raises ``TrainingInterrupted``. Only then does rank 0
hand over to submitit, which calls :meth:`TrainJob.checkpoint` (the same job with ``--resume``),
stores it and requeues the job, so the requeue never races the checkpoint write. Rank 0 requeues
when *any* rank got the signal (the ranks agree on it after the stop: the signal need not reach
every rank before they agree to stop). The handler is installed before the task imports torch,
so a signal during start-up is not lost (the run stops at its first step boundary, or before
the first phase of a schedule). The requeued job resumes from the last checkpoint in OUTPUT_DIR
-- a schedule in the phase it was in.
A stop caused by SIGTERM alone (``scancel``, or a preemption that Slurm requeues itself) also
stores the ``--resume`` submission but does not requeue. After ``--max-requeue`` time-outs
submitit stops requeuing.

This module imports only the standard library at import time, and :func:`main` pickles
:class:`TrainJob` by value (``cloudpickle.register_pickle_by_value``): a task unpickles its job
without importing torch, so its requeue-signal handler goes in before the slow imports.
"""

import argparse
import logging
import os
import random
import signal
import sys
import time
from typing import List, Optional

logger = logging.getLogger("bridle.submit")


def _import_submitit():
    try:
        import submitit
    except ImportError as e:  # pragma: no cover
        raise SystemExit("tools/submit.py needs submitit: pip install submitit") from e
    return submitit


def _master_port(job_id: str) -> int:
    """A port derived from the job id: every task of the job computes the same one."""
    return random.Random(f"bridle-{job_id}").randint(20000, 60000)


class TrainJob:
    """The submitted callable: runs :func:`bridle.engine.entry.main` in this task. Checkpointable in
    submitit's sense (it has :meth:`checkpoint`); instances are pickled into the job folder."""

    def __init__(self, train_args: List[str], resume: bool = False) -> None:
        self.train_args = list(train_args)
        self.resume = bool(resume)
        self._requeue_signal: Optional[int] = None
        self._submitit_handler = None

    # ------------------------------------------------------------------ submitit hooks
    def checkpoint(self, *args, **kwargs):
        """Called by submitit (rank 0) once the trainer's checkpoint is on disk: the job to
        requeue is the same training with ``--resume``."""
        submitit = _import_submitit()
        return submitit.helpers.DelayedSubmission(TrainJob(self.train_args, resume=True))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_requeue_signal"] = None
        state["_submitit_handler"] = None
        return state

    # ------------------------------------------------------------------ the task
    def __call__(self):
        submitit = _import_submitit()
        env = submitit.JobEnvironment()
        # The requeue signal's handler goes in first, before the slow imports below (torch, the
        # trainers: seconds). Until then submitit's own handler holds the signal, and it would
        # requeue from rank 0 at once while every other rank ignores the signal and trains on
        # (locally: waits for the gone rank 0 until the process group's time-out).
        usr_sig = env._usr_sig()
        previous = signal.getsignal(usr_sig)
        self._submitit_handler = getattr(previous, "__self__", None)  # submitit's SignalHandler
        self._requeue_signal = None
        signal.signal(usr_sig, self._on_requeue_signal)
        try:
            return self._run(env)
        finally:
            signal.signal(usr_sig, previous)

    def _run(self, env) -> str:
        from bridle.engine import signals
        from bridle.engine.defaults import default_argument_parser
        from bridle.engine.entry import main as train_main
        from bridle.engine.launch import export_dist_env, launch

        export_dist_env(
            rank=env.global_rank,
            world_size=env.num_tasks,
            local_rank=env.local_rank,
            local_world_size=max(1, env.num_tasks // max(1, env.num_nodes)),
            master_addr=env.hostnames[0] if env.cluster == "slurm" else "127.0.0.1",
            master_port=int(os.environ.get("BRIDLE_MASTER_PORT", _master_port(env.job_id))),
        )
        # Signals: SIGTERM/SIGINT/SIGUSR1 request a graceful stop (bridle.engine.signals); the
        # submitit time-out signal does the same and, once the checkpoint is written, requeues.
        signals.clear_stop_request()
        signals.install_stop_handlers()
        if self._requeue_signal is not None:  # it came during the imports: not forgotten
            signals.request_stop(self._requeue_reason(self._requeue_signal))

        restarted = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
        resume = self.resume or restarted
        argv = list(self.train_args)
        if resume:  # a requeued / restarted job continues its run (never overwrites it again)
            argv = [a for a in argv if a != "--overwrite"]
            if "--resume" not in argv:
                argv.insert(0, "--resume")
        args = default_argument_parser().parse_args(argv)
        logging.getLogger("bridle").info(
            f"submitit task {env.global_rank}/{env.num_tasks} on {env.hostname} (job {env.job_id}), resume={resume}"
        )
        try:
            launch(train_main, 1, args=(args,))
        except signals.TrainingInterrupted as e:  # (entry.main turns it into SystemExit(75))
            self._after_interrupt(env, str(e))
            raise
        except SystemExit as e:
            if e.code != signals.EXIT_INTERRUPTED:
                raise
            self._after_interrupt(env, signals.stop_requested() or "stop requested")
            raise
        return "done"

    @staticmethod
    def _requeue_reason(signum) -> str:
        return f"received {signal.Signals(signum).name} (cluster time limit or preemption)"

    def _on_requeue_signal(self, signum, frame) -> None:
        self._requeue_signal = signum
        signals = sys.modules.get("bridle.engine.signals")  # never import in a signal handler
        if signals is not None:
            signals.request_stop(self._requeue_reason(signum))

    def _requeue_agreed(self) -> bool:
        """Whether any rank received the requeue signal. Every rank calls this once the trainer
        stopped: the ranks agreed on the stop (at the same iteration), but the signal may have
        reached only some of them by then (Slurm signals every node on its own; a rank may have
        stopped on another rank's request), and rank 0 alone decides to requeue."""
        mine = self._requeue_signal is not None
        try:
            import torch
            import torch.distributed as dist
        except ImportError:  # pragma: no cover
            return mine
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return mine
        cuda = dist.get_backend() == "nccl"
        flag = torch.tensor(
            [int(mine)], dtype=torch.int32, device=torch.device("cuda", torch.cuda.current_device()) if cuda else "cpu"
        )
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(int(flag.item()))

    def _after_interrupt(self, env, reason: str) -> None:
        """The trainer stopped and wrote its checkpoint: requeue (time-out / preemption signal
        on any rank) or just store the ``--resume`` submission (SIGTERM/SIGINT)."""
        print(f"bridle.submit: training stopped ({reason}); checkpoint written", flush=True)
        requeue = self._requeue_agreed() or self._requeue_signal is not None  # (or it came just now)
        if requeue and self._requeue_signal is None:
            self._requeue_signal = env._usr_sig()
        handler = self._submitit_handler
        if env.global_rank != 0:
            if requeue and env.cluster == "slurm":
                time.sleep(300)  # rank 0 requeues the job, which ends this task
            raise SystemExit(75)
        if handler is None:
            return  # not under a submitit job with signal handling (debug executor)
        if requeue:
            handler.checkpoint_and_try_requeue(self._requeue_signal)  # dumps checkpoint(), requeues, exits
            return
        # Stopped by SIGTERM/SIGINT: keep the resumable submission (Slurm may requeue a preempted
        # job itself), do not requeue.
        from submitit.core import utils as sutils

        delayed = self.checkpoint()
        with sutils.temporary_save_path(env.paths.submitted_pickle) as tmp:
            delayed.dump(tmp)
        raise SystemExit(75)


def parse_args(argv=None, epilog: Optional[str] = None):
    """The command line of tools/submit.py (``epilog``: the tool's examples, shown before this
    module's description after the options in --help)."""
    p = argparse.ArgumentParser(
        description="Submit tools/train_net.py through submitit (Slurm, local or debug executor).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(epilog + "\n" if epilog else "") + __doc__,
    )
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--nodes", type=int, default=1, help="machines")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per machine")
    p.add_argument(
        "--tasks-per-node", type=int, default=0, help="training processes per machine (0 = --gpus-per-node, at least 1)"
    )
    p.add_argument("--cpus-per-task", type=int, default=10, help="CPU cores per process (loader workers)")
    p.add_argument("--mem-gb", type=int, default=0, help="memory per machine in GB (0 = cluster default)")
    p.add_argument("--partition", default="", help="Slurm partition")
    p.add_argument("--account", default="", help="Slurm account")
    p.add_argument("--constraint", default="", help="Slurm constraint, e.g. volta32gb")
    p.add_argument("--comment", default="", help="Slurm comment")
    p.add_argument("--timeout", type=int, default=4320, help="time limit of one job in minutes")
    p.add_argument(
        "--signal-delay", type=int, default=120, help="seconds before the time limit at which the stop signal is sent"
    )
    p.add_argument("--max-requeue", type=int, default=30, help="requeues after a time-out before giving up")
    p.add_argument(
        "--cluster",
        choices=["slurm", "local", "debug"],
        default=None,
        help="submitit executor (default: slurm when available, else local)",
    )
    p.add_argument("--job-dir", default="", help="submitit folder (logs, pickles); default OUTPUT_DIR/submitit")
    p.add_argument("--name", default="bridle", help="job name")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="resume from the last checkpoint in OUTPUT_DIR")
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an OUTPUT_DIR that holds a run (train_net.py --overwrite; "
        "a requeued job resumes instead)",
    )
    p.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    p.add_argument("--wait", action="store_true", help="wait for the job and exit with its status")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    flags = [o for o in args.opts if o.startswith("--")]
    if flags:
        p.error(f"flags {flags} must come before the KEY VALUE config overrides")
    if len(args.opts) % 2:
        p.error(f"config overrides must be KEY VALUE pairs; got {args.opts}")
    for name in ("nodes", "timeout", "signal_delay", "cpus_per_task"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    if args.gpus_per_node < 0 or args.tasks_per_node < 0:
        p.error("--gpus-per-node and --tasks-per-node must be >= 0")
    return args


def _output_dir(args) -> str:
    from bridle.config import load_config

    return str(load_config(args.config_file, args.opts).OUTPUT_DIR)


def train_args_of(args) -> List[str]:
    out = ["--config-file", os.path.abspath(args.config_file)]
    if args.eval_only:
        out.append("--eval-only")
    if getattr(args, "overwrite", False):
        out.append("--overwrite")
    return out + list(args.opts)


def build_executor(args, folder: str):
    submitit = _import_submitit()
    cluster = args.cluster or submitit.AutoExecutor.which()
    tasks = args.tasks_per_node or max(1, args.gpus_per_node)
    params = dict(
        name=args.name,
        nodes=args.nodes,
        tasks_per_node=tasks,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        timeout_min=args.timeout,
    )
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if cluster == "local":
        if args.nodes != 1:
            raise SystemExit("--cluster local runs on one machine: use --nodes 1")
        # LocalExecutor directly: the AutoExecutor does not pass signal_delay_s to it.
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=args.max_requeue)
        params["signal_delay_s"] = args.signal_delay
    elif cluster == "debug":
        if args.nodes != 1 or tasks != 1:
            raise SystemExit("--cluster debug runs one process in this one: use --nodes 1 --tasks-per-node 1")
        executor = submitit.AutoExecutor(folder=folder, cluster="debug")
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=args.max_requeue)
        params["slurm_signal_delay_s"] = args.signal_delay
        if args.partition:
            params["slurm_partition"] = args.partition
        extra = {
            k: v
            for k, v in (("account", args.account), ("constraint", args.constraint), ("comment", args.comment))
            if v
        }
        if extra:
            params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    return executor, cluster


def main(argv=None, epilog: Optional[str] = None) -> int:
    """tools/submit.py: submit the job (and with ``--wait`` wait for it); the exit status."""
    args = parse_args(argv, epilog)
    out_dir = _output_dir(args)
    folder = args.job_dir or os.path.join(out_dir, "submitit")
    executor, cluster = build_executor(args, folder)
    import cloudpickle

    # By value: the task unpickles TrainJob without importing bridle (and torch) first.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = executor.submit(TrainJob(train_args_of(args), resume=args.resume))
    print(f"Submitted job {job.job_id} ({cluster}); logs in {folder}; OUTPUT_DIR {out_dir}", flush=True)
    if not args.wait:
        return 0
    try:
        job.results()  # every task's result (raises the first task error)
    except Exception as e:  # the job's exception, with its traceback text
        print(f"Job {job.job_id} failed: {e}", file=sys.stderr, flush=True)
        return 1
    print(f"Job {job.job_id} finished", flush=True)
    return 0
