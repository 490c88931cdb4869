"""Start one process per device (``mp.spawn``) or join a ``torchrun`` launch.

NCCL is used when the processes drive CUDA devices, gloo otherwise (CPU runs, tests).
``BRIDLE_DIST_BACKEND`` overrides the choice.
"""

import datetime
import logging
import os
import shutil
import socket
import tempfile
import traceback
from typing import Callable, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bridle.config.config import ConfigValueError
from bridle.errors import EXIT_USER_ERROR, UserError, debug_enabled, log_error_to_files, user_error_message

logger = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend() -> str:
    env = os.environ.get("BRIDLE_DIST_BACKEND")
    if env:
        return env
    return "nccl" if torch.cuda.is_available() else "gloo"


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def export_dist_env(
    rank: int, world_size: int, local_rank: int, local_world_size: int, master_addr: str, master_port: int
) -> None:
    """Set the ``env://`` variables (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE) of a process started by a cluster scheduler (Slurm through
    ``tools/submit.py``); :func:`launch` then joins the process group like under torchrun."""
    os.environ.update(
        MASTER_ADDR=str(master_addr),
        MASTER_PORT=str(int(master_port)),
        RANK=str(int(rank)),
        WORLD_SIZE=str(int(world_size)),
        LOCAL_RANK=str(int(local_rank)),
        LOCAL_WORLD_SIZE=str(int(local_world_size)),
    )


def launch(
    main_func: Callable,
    num_gpus_per_machine: int = 1,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Tuple = (),
    timeout_minutes: float = 30,
) -> None:
    """Run ``main_func(*args)`` on ``num_gpus_per_machine * num_machines`` processes.
    ``num_gpus_per_machine`` is the number of processes per machine (on a CPU-only machine
    each process uses the CPU through gloo)."""
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if launched_by_torchrun():
        if not dist.is_initialized():
            dist.init_process_group(_backend(), init_method="env://", timeout=timeout)
        _set_device(int(os.environ["LOCAL_RANK"]))
        main_func(*args)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ConfigValueError("--dist-url auto is only for one machine; give tcp://HOST:PORT of machine 0.")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigValueError(f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} CUDA devices.")
    error_dir = tempfile.mkdtemp(prefix="bridle-rank-errors-")
    try:
        ctx = mp.start_processes(
            _worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout, error_dir),
            daemon=False,
            start_method="spawn",
            join=False,
        )
        _forward_stop_signals(ctx)
        try:
            while not ctx.join():
                pass
        except (mp.ProcessExitedException, mp.ProcessRaisedException) as e:
            from .signals import EXIT_INTERRUPTED

            message = _rank_user_error(error_dir)
            if message is not None:  # a rank stopped on a user error: one line, not a traceback dump
                raise RankUserError(message) from None
            if getattr(e, "exit_code", None) == EXIT_INTERRUPTED:  # stopped on request, checkpoint written
                raise SystemExit(EXIT_INTERRUPTED) from None
            raise
    finally:
        shutil.rmtree(error_dir, ignore_errors=True)


class RankUserError(UserError, RuntimeError):
    """A spawned rank stopped on a user error (its one-line message, reported by the launcher)."""


def _rank_user_error(error_dir: str):
    """The message of the lowest rank that stopped on a user error, or None."""
    try:
        names = sorted(os.listdir(error_dir), key=lambda n: int(n[4:]) if n[4:].isdigit() else 1 << 30)
    except OSError:
        return None
    for n in names:
        try:
            with open(os.path.join(error_dir, n), encoding="utf-8") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _forward_stop_signals(ctx) -> None:
    """The launcher passes SIGTERM / SIGINT / SIGUSR1 on to its ranks (which stop at a step
    boundary with a checkpoint) instead of dying and leaving them behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def forward(signum, frame):
        for p in ctx.processes:
            if p.is_alive():
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    for name in ("SIGTERM", "SIGINT", "SIGUSR1"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, forward)


def _set_device(local_rank: int) -> None:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)


def _worker(local_rank, main_func, world_size, gpus_per_machine, machine_rank, dist_url, args, timeout, error_dir=""):
    from .signals import die_with_parent

    die_with_parent()  # a rank never outlives its launcher (SIGTERM when the launcher dies)
    rank = machine_rank * gpus_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    try:
        dist.init_process_group(
            backend=_backend(), init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout
        )
    except Exception as e:
        raise RuntimeError(f"Process group initialisation failed at {dist_url}: {e}") from e
    _set_device(local_rank)
    try:
        main_func(*args)
    except Exception as e:
        msg = user_error_message(e)
        if msg is None or not error_dir:
            raise
        # A user error: the launcher prints one line (the lowest failing rank's), exit code 2.
        if debug_enabled():
            traceback.print_exc()
        log_error_to_files(f"[rank {rank}] {msg}" if rank else msg)
        with open(os.path.join(error_dir, f"rank{rank}"), "w", encoding="utf-8") as f:
            f.write(msg)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
