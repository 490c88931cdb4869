"""SOLVER.OPTIMIZER_IMPL: which AdamW implementation build_optimizer picks, and that they agree."""

import pytest
import torch

from bridle.config import get_cfg
from bridle.solver import build_optimizer
from bridle.solver.build import _fused_cpu_adamw


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 2))


def _run(impl):
    cfg = get_cfg(load_plugins=False)
    cfg.SOLVER.OPTIMIZER_IMPL = impl
    m = _model()
    opt = build_optimizer(cfg, m)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    return opt, [p.detach().clone() for p in m.parameters()]


def test_auto_is_fused_on_cpu_where_torch_has_it():
    opt, _ = _run("auto")
    assert bool(opt.defaults.get("fused")) == _fused_cpu_adamw()


@pytest.mark.parametrize("impl", ["fused", "foreach", "for"])
def test_implementations_agree(impl):
    if impl == "fused" and not _fused_cpu_adamw():
        pytest.skip("this torch has no fused CPU AdamW")
    opt, params = _run(impl)
    assert bool(opt.defaults.get("fused")) == (impl == "fused")
    _, ref = _run("for")
    for a, b in zip(params, ref):
        assert torch.allclose(a, b, atol=1e-6)


def test_unknown_impl_names_the_key():
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER_IMPL"):
        _run("turbo")
