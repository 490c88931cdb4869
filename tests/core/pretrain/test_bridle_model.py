"""BRIDLE phases on a tiny model of the (third-party) toy modality."""

import pytest
import torch

from bridle.modeling.bridle_model import BridleModel
from toy_plugin import toy_cfg, toy_signals


@pytest.fixture(autouse=True)
def _toy_modality(toy_plugin):
    """These tests run on the third-party toy modality (tests/toy_plugin.py)."""


tiny_cfg = toy_cfg


def batch(n=8, seed=0):
    return {"input": toy_signals(n, seed)}


def make(phase, cold=False, **extra):
    cfg = tiny_cfg(**extra)
    cfg.MODEL.TOKENIZER.COLD_START = cold
    torch.manual_seed(0)
    m = BridleModel(cfg, phase)
    m.init_tokenizer_codebooks(batch()["input"])
    return m.train()


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} changed"


@pytest.mark.parametrize("phase,cold", [("encoder", True), ("encoder", False), ("tokenizer", False), ("joint", False)])
def test_phase_trains_only_its_modules(phase, cold):
    m = make(phase, cold)
    frozen = {
        name: snapshot(getattr(m, name))
        for name in ("encoder", "decoder", "tokenizer", "estimator")
        if getattr(m, name) not in m.trained_modules()
    }
    if cold:
        frozen["tokenizer"] = snapshot(m.tokenizer)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    for step in range(3):
        m.global_step = step
        out = m(batch(seed=step))
        loss = sum(v for k, v in out.items() if k.startswith("loss"))
        opt.zero_grad()
        loss.backward()
        for name in frozen:
            grads = [p.grad for p in getattr(m, name).parameters() if p.grad is not None]
            assert not grads, f"{name} got gradients in the {phase} phase"
        opt.step()
    for name, before in frozen.items():
        assert_same(before, snapshot(getattr(m, name)))  # parameters and codebooks bitwise equal
    trained = [p for mod in m.trained_modules() for p in mod.parameters() if p.requires_grad]
    assert trained and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_frozen_modules_stay_in_eval_mode():
    m = make("encoder")
    m.train()
    assert m.encoder.training and m.decoder.training
    assert not m.tokenizer.training and not m.estimator.training


def fit_fixed_batch(m, key, steps=50):
    """Losses of ``steps`` AdamW steps of ``m`` on one fixed batch."""
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    b = batch()
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        loss = m(b)[key]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5


def test_loss_decreases_on_a_fixed_batch():
    first, last = fit_fixed_batch(make("encoder", cold=True), "loss_mlm")
    assert last < 0.7 * first, (first, last)


def test_tokenizer_loss_decreases_on_a_fixed_batch():
    first, last = fit_fixed_batch(make("tokenizer"), "loss_cos")
    assert last < 0.8 * first, (first, last)


def test_masked_ce_ignores_unmasked_targets():
    m = make("encoder", cold=True).eval()
    x = batch()["input"]
    codes = m.tokenize(x)
    m.train()
    state = torch.random.get_rng_state()
    base = m.masked_prediction(x, codes)["loss_mlm"]
    # The same masks again; learn which tokens were masked from the generator itself.
    torch.random.set_rng_state(state)
    mask = m.mask_generator(x.shape[0])
    changed_unmasked = codes.clone()
    changed_unmasked[~mask] = (changed_unmasked[~mask] + 1) % m.codebook_size
    changed_masked = codes.clone()
    changed_masked[mask] = (changed_masked[mask] + 1) % m.codebook_size
    torch.random.set_rng_state(state)
    same = m.masked_prediction(x, changed_unmasked)["loss_mlm"]
    torch.random.set_rng_state(state)
    other = m.masked_prediction(x, changed_masked)["loss_mlm"]
    torch.testing.assert_close(same, base)
    assert not torch.allclose(other, base)


def test_joint_phase_runs_tokenizer_every_period():
    m = make("joint", **{"PRETRAIN.JOINT_TOKENIZER_PERIOD": 3, "PRETRAIN.JOINT_RATIO": 0.5})
    has_tok = []
    for step in range(6):
        m.global_step = step
        has_tok.append("loss_cos" in m(batch(seed=step)))
    assert has_tok == [True, False, False, True, False, False]


def test_window_decoder_on_a_2d_grid():
    extra = {
        "MODEL.PATCH_EMBED.NAME": "conv",
        "MODEL.PATCH_EMBED.IN_CHANS": 1,
        "MODEL.PATCH_EMBED.INPUT_SIZE": "[32, 16]",
        "MODEL.PATCH_EMBED.PATCH_SIZE": "[4, 4]",
        "MODEL.DECODER.ATTENTION": "window",
        "MODEL.DECODER.WINDOW_SIZE": "[4, 4]",
        "MODEL.DECODER.SHIFT_SIZE": "[2, 0]",
        "MODEL.DECODER.DEPTH": 2,
    }
    cfg = tiny_cfg(**extra)
    cfg.MODEL.TOKENIZER.COLD_START = True
    m = BridleModel(cfg, "encoder")
    x = torch.randn(2, 32, 16)
    m.init_tokenizer_codebooks(x)
    out = m.train()({"input": x})
    out["loss_mlm"].backward()
    assert torch.isfinite(out["loss_mlm"])


def test_bad_window_size_is_a_clear_error():
    extra = {
        "MODEL.PATCH_EMBED.NAME": "conv",
        "MODEL.PATCH_EMBED.IN_CHANS": 1,
        "MODEL.PATCH_EMBED.INPUT_SIZE": "[32, 16]",
        "MODEL.PATCH_EMBED.PATCH_SIZE": "[4, 4]",
        "MODEL.DECODER.ATTENTION": "window",
        "MODEL.DECODER.WINDOW_SIZE": "[3, 4]",
    }
    cfg = tiny_cfg(**extra)
    cfg.MODEL.TOKENIZER.COLD_START = True
    with pytest.raises(ValueError, match="WINDOW_SIZE"):
        BridleModel(cfg, "encoder")


def test_cold_start_init_is_the_authors():
    # Frozen projection xavier-uniform; patch conv bias PyTorch's default U(+-1/sqrt(fan_in)).
    torch.manual_seed(0)
    cfg = tiny_cfg(**{"MODEL.ENCODER.EMBED_DIM": 64, "MODEL.QUANTIZER.CODE_DIM": 64})
    cfg.MODEL.TOKENIZER.COLD_START = True
    m = BridleModel(cfg, "encoder")
    w = m.tokenizer.proj.weight
    bound = (6.0 / (w.shape[0] + w.shape[1])) ** 0.5  # xavier-uniform bound for 64 -> 64
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(w.std().item() - bound / 3**0.5) < 0.1 * bound  # std of U(-b, b) = b / sqrt(3)
    convs = [c for c in m.tokenizer.patch_embed.modules() if isinstance(c, torch.nn.modules.conv._ConvNd)]
    assert convs
    for c in convs:
        b = 1.0 / c.weight[0].numel() ** 0.5
        assert (c.bias.abs() <= b).all() and c.bias.abs().max() > 0.5 * b  # random, not zero
        assert not c.bias.requires_grad and not w.requires_grad
    # the encoder's own patch embed keeps the MAE init (zero bias)
    enc_convs = [c for c in m.encoder.modules() if isinstance(c, torch.nn.modules.conv._ConvNd)]
    assert all(torch.count_nonzero(c.bias) == 0 for c in enc_convs)


@pytest.mark.parametrize("precision", ["fp32", "amp"])
def test_targets_run_in_fp32_under_autocast_unless_amp(precision):
    m = make("encoder", cold=False, **{"MODEL.TOKENIZER.TARGET_PRECISION": precision})
    x = batch(seed=3)["input"]
    ref = m.targets(x)  # no autocast
    seen = {}
    hook = m.tokenizer.quantizer.register_forward_pre_hook(lambda mod, args: seen.update(dtype=args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = m.targets(x)
        codes = m.tokenize(x)
    hook.remove()
    assert torch.equal(codes, q.codes)
    if precision == "fp32":
        assert seen["dtype"] == torch.float32 and q.quantized.dtype == torch.float32
        assert torch.equal(q.codes, ref.codes)
    else:
        assert seen["dtype"] == torch.bfloat16 and q.quantized.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="TARGET_PRECISION"):
        make("encoder", **{"MODEL.TOKENIZER.TARGET_PRECISION": "fp8"})


def test_target_usage_metrics_count_the_window():
    m = make("encoder", cold=True, **{"MODEL.QUANTIZER.DEAD_CODE_WINDOW": 2})
    seen = []
    for step in range(3):
        x = batch(seed=10 + step)["input"]
        seen.append(m.tokenize(x))
        out = m({"input": x})
    window = torch.cat(seen[-2:]).reshape(-1, 2)  # the last two forwards' codes
    for level in range(2):
        used = torch.unique(window[:, level]).numel()
        assert out[f"targets/cur/l{level}"].item() == pytest.approx(used / 16)
        assert out[f"targets/dead_codes/l{level}"].item() == 16 - used
        counts = torch.bincount(window[:, level], minlength=16).float()
        p = counts[counts > 0] / counts.sum()
        assert out[f"targets/perplexity/l{level}"].item() == pytest.approx(
            torch.exp(-(p * p.log()).sum()).item(), rel=1e-5
        )


def test_teacher_layer_reconstructs_that_blocks_normalised_output():
    x = batch()["input"]
    last = make("tokenizer", **{"PRETRAIN.TEACHER_PRECISION": "fp32"})
    with torch.no_grad():
        ref = last.encoder.norm(last.encoder(x, num_blocks=last.encoder.depth))[:, 1:]
    torch.testing.assert_close(last.teacher_features(x), ref)
    m = make(
        "tokenizer", **{"PRETRAIN.TEACHER_PRECISION": "fp32", "PRETRAIN.TEACHER_LAYER": 1, "MODEL.ENCODER.DEPTH": 2}
    )
    with torch.no_grad():
        enc = m.encoder
        tokens = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1), enc.embed(x)], 1)
        block1 = enc.blocks[0](tokens)[:, 1:]
    want = (block1 - block1.mean(-1, keepdim=True)) / torch.sqrt(block1.var(-1, unbiased=False, keepdim=True) + 1e-6)
    got = m.teacher_features(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        final = m.encoder(x)[:, 1:]
    assert not torch.allclose(got, final, atol=1e-2)
    out = m(batch())
    assert torch.isfinite(out["loss_cos"]) and out["loss_cos"] > 0


@pytest.mark.parametrize("layer", [-1, 1])
def test_teacher_layer_out_of_range_is_a_clear_error(layer):
    with pytest.raises(ValueError, match="PRETRAIN.TEACHER_LAYER"):
        make("tokenizer", **{"PRETRAIN.TEACHER_LAYER": layer})


def test_joint_phase_under_fp16_autocast_with_a_bf16_teacher():
    """The joint phase trains the encoder under the step's fp16 autocast and runs the same encoder
    as the bf16 teacher: the teacher must not reuse autocast's cached fp16 weight copies."""
    m = make("joint", **{"PRETRAIN.TEACHER_PRECISION": "bf16", "PRETRAIN.JOINT_TOKENIZER_PERIOD": 1})
    with torch.autocast("cpu", dtype=torch.float16):
        out = m(batch())
    loss = sum(v for k, v in out.items() if k.startswith("loss"))
    assert "loss_cos" in out and torch.isfinite(loss)
    loss.backward()
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None
