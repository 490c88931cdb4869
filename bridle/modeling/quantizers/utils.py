"""Small numeric helpers shared by the quantizers (all fp32, all device-side).

Nothing here synchronises with the host, and the distributed helpers are no-ops
unless ``torch.distributed`` is initialised with more than one process.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from bridle.utils import comm

__all__ = [
    "l2norm",
    "ema_",
    "norm_ema_",
    "all_reduce_sum_",
    "broadcast_many_",
    "sample_rows",
    "scale_grad",
    "usage_metrics",
]

#: Norm floor of :func:`l2norm`: a zero vector maps to zero (never NaN), in both passes.
L2NORM_EPS = 1e-6


def l2norm(x: torch.Tensor, dim: int = -1, eps: float = L2NORM_EPS) -> torch.Tensor:
    """``x / max(||x||, eps)`` along ``dim``; zero vectors stay zero (finite gradient too)."""
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``scale`` in the backward pass."""
    return _ScaleGrad.apply(x, scale)


def ema_(avg: torch.Tensor, new: torch.Tensor, decay: float) -> torch.Tensor:
    """In place ``avg <- decay * avg + (1 - decay) * new``; returns ``avg``."""
    return avg.mul_(decay).add_(new, alpha=1.0 - decay)


def norm_ema_(avg: torch.Tensor, new: torch.Tensor, decay: float) -> torch.Tensor:
    """In place NormEMA (BEATs): ``avg <- normalize(decay * avg + (1 - decay) * normalize(new))``."""
    ema_(avg, l2norm(new), decay)
    avg.copy_(l2norm(avg))
    return avg


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum every tensor across processes, in place, with a single collective.

    The tensors are packed into one flat fp32 buffer (they may differ in shape); in a single
    process nothing is packed and nothing is called.
    """
    if comm.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    comm.all_reduce_(flat, op="sum")
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def broadcast_many_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Broadcast every tensor from ``src``, in place, with one collective (no-op in one process)."""
    if comm.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    comm.broadcast_(flat, src=src)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def sample_rows(
    x: torch.Tensor, num: int, num_sets: int = 1, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Row indices ``long [num_sets, num]`` into ``x [M, ...]``: distinct within a set when
    ``M >= num``, drawn with replacement otherwise. Device-side, no host sync."""
    m = x.shape[0]
    if m == 0:
        raise ValueError("cannot sample rows from an empty tensor")
    if m >= num:
        scores = torch.rand(num_sets, m, device=x.device, generator=generator)
        return scores.topk(num, dim=1).indices
    return torch.randint(m, (num_sets, num), device=x.device, generator=generator)


def usage_metrics(counts: torch.Tensor, num_dead: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-level code-usage metrics as 0-d fp32 tensors (no host sync).

    ``counts [L, K]``: assignments of the current batch; ``num_dead [L]``: codes whose EMA
    usage is below the dead-code threshold. Keys: ``cur/l{i}`` (fraction of codes used in the
    batch), ``perplexity/l{i}`` and ``entropy_bits/l{i}`` (of the batch's code distribution)
    and ``dead_codes/l{i}``.
    """
    counts = counts.float()
    probs = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1.0)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(dim=-1)  # nats, [L]
    cur = (counts > 0).float().mean(dim=-1)
    perplexity = entropy.exp()
    bits = entropy / math.log(2.0)
    num_dead = num_dead.float()
    out: Dict[str, torch.Tensor] = {}
    for i in range(counts.shape[0]):
        out[f"cur/l{i}"] = cur[i]
        out[f"perplexity/l{i}"] = perplexity[i]
        out[f"entropy_bits/l{i}"] = bits[i]
        out[f"dead_codes/l{i}"] = num_dead[i]
    return out
