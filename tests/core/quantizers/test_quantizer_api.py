"""API of the quantizers: shapes, dtypes, registry/config, state, metrics, eval purity."""

import math

import pytest
import torch

import bridle.modeling  # noqa: F401  (registration happens on this import)
from bridle.config.defaults import _C
from bridle.modeling.quantizers import (
    QuantizerOutput,
    ResidualQuantizer,
    VectorQuantizer,
    build_quantizer,
    l2norm,
    usage_metrics,
)
from bridle.registry import QUANTIZER
from qz_helpers import single_thread  # noqa: F401  (autouse fixture)

METRIC_NAMES = ("cur", "perplexity", "entropy_bits", "dead_codes")


def _make(kind, **kw):
    if kind == "vq":
        return VectorQuantizer(codebook_size=16, code_dim=8, **kw)
    return ResidualQuantizer(num_levels=3, codebook_size=16, code_dim=8, **kw)


@pytest.mark.parametrize("kind", ["vq", "rq"])
@pytest.mark.parametrize("shape", [(2, 5, 8), (7, 8)])
def test_output_shapes_and_dtypes(kind, shape):
    torch.manual_seed(0)
    q = _make(kind).train()
    z = torch.randn(*shape)
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    levels = 1 if kind == "vq" else 3
    assert q.num_levels == levels and q.codebook_size == 16 and q.code_dim == 8
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.codes.shape == (*shape[:-1], levels) and out.codes.dtype == torch.long
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 16
    assert out.loss.dim() == 0 and out.loss.dtype == torch.float32
    assert out.soft_codes is None
    for level in range(levels):
        for name in METRIC_NAMES:
            m = out.metrics[f"{name}/l{level}"]
            assert isinstance(m, torch.Tensor) and m.dim() == 0 and m.dtype == torch.float32
    assert f"cur/l{levels}" not in out.metrics
    # The forward value of `quantized` is the sum of the level vectors of `codes`.
    torch.testing.assert_close(out.quantized.reshape(-1, 8), q.codes_to_vectors(out.codes).reshape(-1, 8))
    assert q.get_codebooks().shape == (levels, 16, 8)


@pytest.mark.parametrize("kind", ["vq", "rq"])
def test_soft_codes_are_top_k_and_codes_stay_top_1(kind):
    torch.manual_seed(0)
    q = _make(kind, soft_codes=3).train()
    z = torch.randn(4, 6, 8)
    out = q(z)
    levels = q.num_levels
    assert out.soft_codes.shape == (4, 6, levels, 3) and out.soft_codes.dtype == torch.long
    assert torch.equal(out.soft_codes[..., 0], out.codes)
    # k distinct codes per level
    s = out.soft_codes.sort(dim=-1).values
    assert (s[..., 1:] != s[..., :-1]).all()
    # For the first level the top-k are the k nearest codes of the input.
    cb = q.get_codebooks()[0]
    x = z.reshape(-1, 8)
    if kind == "vq":
        score = l2norm(x) @ l2norm(cb).t()
    else:
        score = -torch.cdist(x, cb)
    expected = score.topk(3, dim=1).indices
    assert torch.equal(out.soft_codes.reshape(-1, levels, 3)[:, 0], expected)


def test_registry_and_build_from_config():
    assert QUANTIZER.get("vq") is VectorQuantizer
    assert QUANTIZER.get("rq") is ResidualQuantizer
    cfg = _C.clone()
    q = build_quantizer(cfg)
    assert isinstance(q, ResidualQuantizer)
    qc = cfg.MODEL.QUANTIZER
    assert (q.num_levels, q.codebook_size, q.code_dim) == (qc.NUM_LEVELS, qc.CODEBOOK_SIZE, qc.CODE_DIM)
    assert (q.ema, q.decay, q.commitment, q.init) == (qc.EMA, qc.DECAY, qc.COMMITMENT, qc.INIT)
    assert (q.restart_period, q.dead_code_threshold, q.soft_codes) == (
        qc.RESTART_PERIOD,
        qc.DEAD_CODE_THRESHOLD,
        qc.SOFT_CODES,
    )
    assert q.lookup == qc.LOOKUP

    cfg.MODEL.QUANTIZER.NAME = "vq"
    with pytest.raises(ValueError, match="NUM_LEVELS"):
        build_quantizer(cfg)
    cfg.MODEL.QUANTIZER.NUM_LEVELS = 1
    cfg.MODEL.QUANTIZER.CODEBOOK_SIZE = 32
    cfg.MODEL.QUANTIZER.EMA = False
    cfg.MODEL.QUANTIZER.SOFT_CODES = 2
    vq = build_quantizer(cfg)
    assert isinstance(vq, VectorQuantizer) and vq.codebook_size == 32 and vq.soft_codes == 2
    assert isinstance(vq.codebook, torch.nn.Parameter)


def test_constructor_defaults_and_validation():
    vq, rq = VectorQuantizer(), ResidualQuantizer()
    assert (vq.num_levels, vq.codebook_size, vq.code_dim) == (1, 1024, 256)
    assert (rq.num_levels, rq.codebook_size, rq.code_dim) == (4, 256, 256)
    assert rq.lookup == "unit" and vq.lookup == "cosine" and rq.init == "kmeans"
    with pytest.raises(ValueError, match="INIT"):
        ResidualQuantizer(2, 8, 4, init="zeros")
    with pytest.raises(ValueError, match="SOFT_CODES"):
        ResidualQuantizer(2, 8, 4, soft_codes=9)
    with pytest.raises(ValueError, match="lookup"):
        ResidualQuantizer(2, 8, 4, lookup="manhattan")
    with pytest.raises(ValueError, match="CODE_DIM"):
        ResidualQuantizer(2, 8, 4)(torch.randn(3, 5))


@pytest.mark.parametrize("kind", ["vq", "rq"])
@pytest.mark.parametrize("ema", [True, False])
def test_eval_mode_is_pure(kind, ema):
    torch.manual_seed(0)
    q = _make(kind, ema=ema, restart_period=1, dead_code_threshold=10.0)
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(3, 4, 8))  # not initialised: eval must not initialise either
    assert not q.is_initialized()
    for k, v in before.items():
        assert torch.equal(v, q.state_dict()[k]), f"eval forward changed {k}"
    q.train()
    q(torch.randn(3, 4, 8))  # initialise + one EMA step (+ a restart check)
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    z = torch.randn(3, 4, 8)
    out1 = q(z)
    out2 = q(z)
    after = q.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"eval forward changed {k}"
    assert torch.equal(out1.codes, out2.codes) and torch.equal(out1.quantized, out2.quantized)
    assert int(q.num_updates) == 1


@pytest.mark.parametrize("kind", ["vq", "rq"])
def test_state_dict_roundtrip_keeps_initialised_state(kind):
    torch.manual_seed(0)
    q = _make(kind).train()
    for _ in range(3):
        q(torch.randn(2, 10, 8))
    assert q.is_initialized() and int(q.num_updates) == 3
    sd = q.state_dict()
    assert bool(sd["initialized"]) and int(sd["num_updates"]) == 3
    assert "_level_offsets" not in sd
    fresh = _make(kind)
    assert not fresh.is_initialized()
    fresh.load_state_dict(sd)
    assert fresh.is_initialized() and int(fresh.num_updates) == 3
    q.eval(), fresh.eval()
    z = torch.randn(2, 10, 8)
    assert torch.equal(q(z).codes, fresh(z).codes)
    # A loaded quantizer is not re-initialised by its next training forward.
    fresh.train()
    cb = fresh.codebook.detach().clone()
    fresh.init = "uniform"
    fresh(z)
    assert (fresh.codebook - cb).abs().max() < 0.5  # an EMA step, not a new random draw


def test_checkpoint_is_portable_between_ema_and_learned():
    torch.manual_seed(0)
    a = ResidualQuantizer(2, 8, 4, ema=True).train()
    a(torch.randn(32, 4))
    b = ResidualQuantizer(2, 8, 4, ema=False)
    b.load_state_dict(a.state_dict())
    assert b.is_initialized()
    torch.testing.assert_close(b.get_codebooks(), a.get_codebooks())


def test_usage_metrics_values():
    counts = torch.tensor([[2.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    m = usage_metrics(counts, torch.tensor([1.0, 0.0]))
    assert m["cur/l0"].item() == pytest.approx(0.5)
    assert m["cur/l1"].item() == pytest.approx(1.0)
    assert m["entropy_bits/l0"].item() == pytest.approx(1.0)
    assert m["entropy_bits/l1"].item() == pytest.approx(2.0)
    assert m["perplexity/l0"].item() == pytest.approx(2.0)
    assert m["perplexity/l1"].item() == pytest.approx(4.0)
    assert m["dead_codes/l0"].item() == 1.0 and m["dead_codes/l1"].item() == 0.0


def test_metrics_follow_the_batch():
    torch.manual_seed(0)
    q = ResidualQuantizer(1, 8, 4, init="kmeans").train()
    x = torch.randn(64, 4)
    q(x)
    q.eval()
    out = q(x)
    counts = torch.bincount(out.codes[:, 0], minlength=8).float()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    assert out.metrics["cur/l0"].item() == pytest.approx((counts > 0).float().mean().item())
    assert out.metrics["entropy_bits/l0"].item() == pytest.approx(ent.item() / math.log(2), rel=1e-5)
    torch.testing.assert_close(out.metrics["recon_mse"], ((out.quantized - x) ** 2).mean())


def test_usage_window_sums_the_last_forwards():
    from bridle.modeling.quantizers import UsageWindow

    w = UsageWindow(1, 3, window=2)
    for i, c in enumerate(([1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0])):
        w.push(torch.tensor([c]))
        assert w.age.tolist() == [[i + 1] * 3]
    assert w.counts.tolist() == [[0.0, 2.0, 3.0]]  # the first forward left the window
    w.reset(torch.tensor([[False, True, False]]))
    assert w.counts.tolist() == [[0.0, 0.0, 3.0]] and w.age.tolist() == [[3, 0, 3]]
    w.push(torch.tensor([[1.0, 1.0, 1.0]]))
    assert w.counts.tolist() == [[1.0, 1.0, 4.0]]
    # The window is saved in checkpoints: a copy loaded from it continues identically.
    saved = {k: v.clone() for k, v in w.state_dict().items()}
    assert set(saved) == {"ring", "counts", "age", "slot"}
    copy = UsageWindow(1, 3, window=2)
    copy.load_state_dict(saved)
    for win in (w, copy):
        win.push(torch.tensor([[0.0, 5.0, 0.0]]))
    for k in saved:
        assert torch.equal(getattr(w, k), getattr(copy, k)), k
    # A checkpoint without a window (older files) or with another window length: empty window.
    other = UsageWindow(1, 3, window=4)
    other.push(torch.tensor([[1.0, 1.0, 1.0]]))
    other.load_state_dict(saved)
    assert other.counts.sum() == 0 and other.age.sum() == 0 and other.ring.shape[0] == 4
    other.push(torch.tensor([[1.0, 1.0, 1.0]]))
    other.load_state_dict({})
    assert other.counts.sum() == 0
    w.reset()
    assert w.counts.sum() == 0 and w.age.sum() == 0
