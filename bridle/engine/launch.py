"""Start one process per device (``mp.spawn``) or join a ``torchrun`` launch.

NCCL is used when the processes drive CUDA devices, gloo otherwise (CPU runs, tests).
``BRIDLE_DIST_BACKEND`` overrides the choice.
"""
import datetime
import logging
import os
import socket
from typing import Callable, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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


def launch(
    main_func: Callable,
    num_gpus_per_machine: int = 1,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Tuple = (),
    timeout_minutes: int = 30,
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
            raise ValueError("--dist-url auto is only for one machine; give tcp://HOST:PORT of machine 0.")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} CUDA devices."
        )
    mp.start_processes(
        _worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


def _set_device(local_rank: int) -> None:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)


def _worker(local_rank, main_func, world_size, gpus_per_machine, machine_rank, dist_url, args, timeout):
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
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
