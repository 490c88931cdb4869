"""AdamW with parameter groups: no weight decay on biases, norms and tokens; optional
layer-wise lr decay (each group carries an ``lr_scale`` the schedule multiplies in)."""

import logging
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

# Parameters whose name ends with one of these never get weight decay.
NO_DECAY_SUFFIXES = ("cls_token", "mask_token", "pos_embed", "dist_token")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in NO_DECAY_SUFFIXES


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_id_fn: Optional[Callable[[str], int]] = None,
    num_layers: int = 0,
    layer_decay: float = 1.0,
) -> List[Dict]:
    """Trainable parameters grouped by (decay?, layer). ``layer_id_fn(name)`` maps a parameter
    to a layer in [0, num_layers]; its lr scale is ``layer_decay ** (num_layers - id)``."""
    groups: Dict[tuple, Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = is_no_decay(name, p)
        layer = layer_id_fn(name) if layer_id_fn is not None else num_layers
        scale = layer_decay ** (num_layers - layer) if layer_id_fn is not None else 1.0
        key = (no_decay, layer)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": scale,
                "layer_id": layer,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_optimizer(cfg, model: nn.Module, groups: Optional[List[Dict]] = None) -> torch.optim.Optimizer:
    s = cfg.SOLVER
    if groups is None:
        groups = param_groups(model, s.WEIGHT_DECAY)
    if not groups:
        raise ValueError("The model has no trainable parameters: nothing to optimise.")
    for g in groups:
        g.pop("names", None)
    kwargs = dict(lr=s.BASE_LR, betas=tuple(s.BETAS), eps=s.EPS)
    kwargs.update(optimizer_impl_kwargs(str(getattr(s, "OPTIMIZER_IMPL", "auto")), groups))
    return torch.optim.AdamW(groups, **kwargs)


OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for")
_FUSED_CPU: Optional[bool] = None


def _fused_cpu_adamw() -> bool:
    """Whether this torch has AdamW's fused CPU kernel (torch >= 2.4), probed once."""
    global _FUSED_CPU
    if _FUSED_CPU is None:
        try:
            p = torch.zeros(2, requires_grad=True)
            p.grad = torch.ones(2)
            torch.optim.AdamW([p], lr=0.1, fused=True).step()
            _FUSED_CPU = True
        except (RuntimeError, ValueError, TypeError):
            _FUSED_CPU = False
    return _FUSED_CPU


def optimizer_impl_kwargs(impl: str, groups: List[Dict]) -> Dict[str, bool]:
    """AdamW implementation flags for SOLVER.OPTIMIZER_IMPL: "auto" = fused (one kernel for the
    whole update) when every parameter is on CUDA, or on the CPU where this torch has the fused
    CPU kernel (5x faster than the per-tensor loop for a ViT-B tokenizer phase's 108M parameters),
    else torch's default."""
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"SOLVER.OPTIMIZER_IMPL must be one of {OPTIMIZER_IMPLS}; got '{impl}'.")
    params = [p for g in groups for p in g["params"]]
    on_cuda = all(p.is_cuda for p in params)
    on_cpu = all(p.device.type == "cpu" for p in params)
    if impl == "auto":
        return {"fused": True} if on_cuda or (on_cpu and _fused_cpu_adamw()) else {}
    if impl == "fused":
        return {"fused": True}
    return {"foreach": impl == "foreach"}
