"""Small numeric helpers shared by the quantizers (all fp32, all device-side).

Nothing here synchronises with the host, and the distributed helpers are no-ops
unless ``torch.distributed`` is initialised with more than one process.
"""

import logging
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridle.utils import comm

logger = logging.getLogger(__name__)

__all__ = [
    "l2norm",
    "ema_",
    "norm_ema_",
    "all_reduce_sum_",
    "broadcast_many_",
    "sample_rows",
    "hashed_rows",
    "hash32",
    "scale_grad",
    "usage_metrics",
    "UsageWindow",
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


#: 32-bit mask and the odd multiplier of :func:`hash32` (the constant of the "hash32" integer
#: hash popularised by T. Mueller; below 2**31, so every product fits in int64).
_M32 = 0xFFFFFFFF
_HASH_MUL = 0x45D9F3B
#: Spreads the set index before hashing (2**32 / golden ratio, as in Knuth's multiplicative hashing).
_SET_STRIDE = 0x9E3779B9


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of ``[0, 2**32)`` that scrambles the bits (xor-shift / multiply rounds) of an
    int64 tensor, taken modulo ``2**32``. Integer ops only, so eager and compiled graphs give the
    same values, and nothing here touches a random generator."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * _HASH_MUL) & _M32
    x = x ^ (x >> 16)
    x = (x * _HASH_MUL) & _M32
    return x ^ (x >> 16)


def hashed_rows(num_rows: int, num: int, key: torch.Tensor, num_sets: int = 1) -> torch.Tensor:
    """Pseudo-random row indices ``long [num_sets, num]`` into ``num_rows`` rows, a function of
    the int64 ``key`` (a 0-d tensor, e.g. a step counter): distinct within a set when
    ``num_rows >= num`` (the rows with the ``num`` largest hashes), drawn with replacement
    otherwise. Counter-based (no generator state): the same key gives the same rows in eager
    mode, under ``torch.compile`` and after a resume, with no host sync."""
    if num_rows == 0:
        raise ValueError("cannot sample rows from an empty tensor")
    sets = torch.arange(num_sets, device=key.device, dtype=torch.long)
    set_key = hash32(hash32(key.long()) + sets * _SET_STRIDE)  # [S]
    if num_rows >= num:
        rows = torch.arange(num_rows, device=key.device, dtype=torch.long)
        # set_key + i is distinct for distinct rows (mod 2**32) and hash32 is a bijection: no ties.
        return hash32(set_key[:, None] + rows[None, :]).topk(num, dim=1).indices
    draws = torch.arange(num, device=key.device, dtype=torch.long)
    return hash32(set_key[:, None] + draws[None, :]) % num_rows


def usage_metrics(counts: torch.Tensor, num_dead: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-level code-usage metrics as 0-d fp32 tensors (no host sync).

    ``counts [L, K]``: assignments per code (of a usage window, of a batch or of a whole data
    set); ``num_dead [L]``: codes counted as dead. Keys: ``cur/l{i}`` (fraction of codes
    used), ``perplexity/l{i}`` and ``entropy_bits/l{i}`` (of the code distribution) and
    ``dead_codes/l{i}``.
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


class UsageWindow(nn.Module):
    """Per-code row counts ``[L, K]`` of the last ``window`` forwards (a ring buffer), and each
    code's age (forwards since its birth: init, restart or :meth:`reset`).

    ``counts`` is the sum over the window: a code is unused when it got no row in that many
    forwards, whatever the phase length or the EMA decay. All state is in buffers that are
    saved in checkpoints, so a resumed run restarts exactly the codes the uninterrupted run
    would. Tensor ops only, no host sync.
    """

    def __init__(self, num_levels: int, codebook_size: int, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"the usage window must hold >= 1 forwards; got {window}")
        self.window = int(window)
        self.register_buffer("ring", torch.zeros(self.window, num_levels, codebook_size))
        self.register_buffer("counts", torch.zeros(num_levels, codebook_size))
        self.register_buffer("age", torch.zeros(num_levels, codebook_size, dtype=torch.long))
        # next ring slot, on the device (no host-side state that changes every forward)
        self.register_buffer("slot", torch.zeros(1, dtype=torch.long))

    _STATE = ("ring", "counts", "age", "slot")

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        keys = [prefix + n for n in self._STATE]
        ring = state_dict.get(prefix + "ring")
        if all(k in state_dict for k in keys) and ring is not None and ring.shape == self.ring.shape:
            super()._load_from_state_dict(
                state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
            )
            return
        # A checkpoint written before the window was saved, or with another window length
        # (MODEL.QUANTIZER.DEAD_CODE_WINDOW): the window starts empty.
        if any(k in state_dict for k in keys):
            logger.warning(
                f"{prefix}: the saved usage window does not fit (shape "
                f"{tuple(ring.shape) if ring is not None else None} vs {tuple(self.ring.shape)}); it starts empty."
            )
        for k in keys:
            state_dict.pop(k, None)
        self.reset()

    @torch.no_grad()
    def push(self, counts: torch.Tensor) -> None:
        """Add one forward's counts ``[L, K]`` (dropping the oldest forward once full)."""
        self.ring.index_copy_(0, self.slot, counts.to(self.ring.dtype)[None])
        self.slot.add_(1).remainder_(self.window)
        self.counts.copy_(self.ring.sum(dim=0))
        self.age.add_(1)

    @torch.no_grad()
    def reset(self, mask: Optional[torch.Tensor] = None) -> None:
        """Forget the counts (and age) of every code, or only of the codes in ``mask [L, K]``."""
        if mask is None:
            self.ring.zero_()
            self.counts.zero_()
            self.age.zero_()
            self.slot.zero_()
            return
        self.ring.masked_fill_(mask[None], 0.0)
        self.counts.masked_fill_(mask, 0.0)
        self.age.masked_fill_(mask, 0)
