"""Distributed helpers that are no-ops in a single process.

Every collective here checks ``torch.distributed.is_initialized()`` first, so code
that calls them runs unchanged without torch.distributed.
"""

from typing import Any, List

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum or mean); returns the tensor. No-op in one process."""
    if is_dist() and get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if op == "mean":
            tensor.div_(get_world_size())
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from ``src``; no-op in one process. Inside a compiled graph it is the
    functional collective (dynamo cannot trace ``dist.broadcast``; it remaps ``all_reduce``
    itself), e.g. the quantizer's first-batch init under ``torch.cond``."""
    if is_dist() and get_world_size() > 1:
        if torch.compiler.is_compiling():
            from torch.distributed import _functional_collectives as funcol

            tensor.copy_(funcol.broadcast(tensor, src, dist.group.WORLD))
        else:
            dist.broadcast(tensor, src=src)
    return tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate (along dim 0) a tensor of the same shape from every rank."""
    if not (is_dist() and get_world_size() > 1):
        return tensor
    out = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


def all_gather_object(obj: Any) -> List[Any]:
    if not (is_dist() and get_world_size() > 1):
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (is_dist() and get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
