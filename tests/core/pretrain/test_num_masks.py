"""PRETRAIN.NUM_MASKS: several masked views per target in the encoder phases (issue #23 item 1).

M = 1 is the authors' one mask per sample and must stay bit-identical to the forward before
NUM_MASKS existed; M > 1 computes the target once and averages the loss over M views."""

import glob
import os

import pytest
import torch

from bridle.config import get_cfg
from bridle.config.config import ConfigValueError
from bridle.config.validate import validate_config
from bridle.modeling.bridle_model import BridleModel
from toy_plugin import toy_cfg, toy_opts, toy_signals

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = sorted(glob.glob(os.path.join(REPO, "configs", "*", "tiny_pretrain.yaml")))


@pytest.fixture(autouse=True)
def _toy_modality(toy_plugin):
    """The toy (third-party) modality of tests/toy_plugin.py."""


tiny_cfg = toy_cfg
signals = toy_signals


def make(phase, cold=False, **extra):
    cfg = tiny_cfg(**extra)
    cfg.MODEL.TOKENIZER.COLD_START = cold
    torch.manual_seed(0)
    m = BridleModel(cfg, phase)
    m.init_tokenizer_codebooks(signals())
    return m.train()


def forward_before_num_masks(m, batch):
    """BridleModel.forward's training path as it was before PRETRAIN.NUM_MASKS (the reference)."""
    x = batch["input"]
    q = m.targets(x)
    out = m.masked_prediction(x, q.codes, q.soft_codes)
    out.update({f"targets/{k}": v for k, v in m._target_metrics(q).items()})
    if m.phase == "joint" and m.global_step % m.joint_period == 0:
        for k, v in m.tokenizer_loss(x).items():
            out[k] = v * m.joint_ratio if k.startswith("loss") else v
    return out


def train_steps(m, forward, steps=3, seed=0):
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(seed)
    losses = []
    for step in range(steps):
        m.global_step = step
        out = forward({"input": signals(seed=step)})
        loss = sum(v for k, v in out.items() if k.startswith("loss"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_default_is_one_and_bad_values_are_one_line_user_errors():
    assert get_cfg().PRETRAIN.NUM_MASKS == 1
    for bad in (0, -2):
        cfg = tiny_cfg(**{"PRETRAIN.NUM_MASKS": bad})
        with pytest.raises(ConfigValueError) as e:
            validate_config(cfg)
        assert "PRETRAIN.NUM_MASKS" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(ConfigValueError, match="PRETRAIN.NUM_MASKS"):
            BridleModel(cfg, "encoder")
    with pytest.raises(Exception, match="NUM_MASKS"):  # a float is refused by the config's type check
        tiny_cfg(**{"PRETRAIN.NUM_MASKS": 2.5})


@pytest.mark.parametrize("phase,cold", [("encoder", True), ("encoder", False), ("joint", False)])
def test_one_mask_is_bit_identical_to_before(phase, cold):
    """Same losses and parameters after 3 AdamW steps as the pre-NUM_MASKS forward."""
    new = make(phase, cold)
    ref = make(phase, cold)
    assert new.num_masks == 1
    a = train_steps(new, new)
    b = train_steps(ref, lambda batch: forward_before_num_masks(ref, batch))
    assert a == b
    sa, sb = new.state_dict(), ref.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_views_share_one_target_and_get_independent_masks(monkeypatch):
    m = make("encoder", cold=False, **{"PRETRAIN.NUM_MASKS": 3})
    x = signals()
    calls, seen = [], {}
    real_tok = m.tokenizer.forward
    monkeypatch.setattr(m.tokenizer, "forward", lambda *a, **k: calls.append(1) or real_tok(*a, **k))
    real_mp = m.masked_prediction

    def spy(xv, codes, soft=None):
        seen.update(x=xv, codes=codes)
        gen = m.mask_generator

        def record(b, device=None, generator=None):
            seen["mask"] = gen(b, device=device, generator=generator)
            return seen["mask"]

        m.mask_generator = record
        try:
            return real_mp(xv, codes, soft)
        finally:
            m.mask_generator = gen

    monkeypatch.setattr(m, "masked_prediction", spy)
    out = m({"input": x})
    assert len(calls) == 1  # the target: one tokenizer forward for the B samples
    b = x.shape[0]
    assert seen["x"].shape[0] == 3 * b and seen["mask"].shape[0] == 3 * b
    codes = m.targets(x).codes
    for v in range(3):  # view v of sample i is row v * B + i
        assert torch.equal(seen["x"][v * b : (v + 1) * b], x)
        assert torch.equal(seen["codes"][v * b : (v + 1) * b], codes)
    mask = seen["mask"].view(3, b, -1)
    assert (mask.sum(-1) == m.num_masked).all()
    assert not torch.equal(mask[0], mask[1]) and not torch.equal(mask[1], mask[2])
    assert torch.isfinite(out["loss_mlm"])


class _FixedMasks:
    """A mask generator returning given rows (to compare M views with M one-mask forwards)."""

    def __init__(self, rows, num_masked):
        self.rows, self.num_masked = rows, num_masked

    def __call__(self, batch_size, device=None, generator=None):
        assert batch_size == self.rows.shape[0]
        return self.rows


def test_loss_is_the_mean_over_views():
    m = make("encoder", cold=False, **{"PRETRAIN.NUM_MASKS": 2})
    m.eval()  # no dropout; the masked-prediction path is called directly
    x = signals()
    b = x.shape[0]
    torch.manual_seed(3)
    masks = m.mask_generator(2 * b)
    q = m.targets(x)
    m.mask_generator = _FixedMasks(masks, m.num_masked)
    both = m.masked_prediction(*m.masked_views(x, q.codes, q.soft_codes))["loss_mlm"]
    per_view = []
    for v in range(2):
        m.mask_generator = _FixedMasks(masks[v * b : (v + 1) * b], m.num_masked)
        per_view.append(m.masked_prediction(x, q.codes, q.soft_codes)["loss_mlm"])
    torch.testing.assert_close(both, (per_view[0] + per_view[1]) / 2, rtol=1e-5, atol=1e-6)


def test_mask_rng_is_consumed_as_one_batch_of_b_times_m():
    """The views' masks are the generator's B x M rows from the global RNG: reproducible from the seed."""
    m = make("encoder", cold=True, **{"PRETRAIN.NUM_MASKS": 2})
    x = signals()
    torch.manual_seed(5)
    expected = m.mask_generator(2 * x.shape[0])
    after = torch.rand(1)
    got = {}
    gen = m.mask_generator
    m.mask_generator = lambda bsz, device=None, generator=None: got.setdefault("mask", gen(bsz, device, generator))
    m.mask_generator.num_masked = gen.num_masked  # type: ignore[attr-defined]
    torch.manual_seed(5)
    m({"input": x})
    assert torch.equal(got["mask"], expected) and torch.equal(torch.rand(1), after)


def test_tokenizer_phase_ignores_it():
    a, b = make("tokenizer"), make("tokenizer", **{"PRETRAIN.NUM_MASKS": 4})
    torch.manual_seed(0)
    la = a({"input": signals()})["loss_cos"]
    torch.manual_seed(0)
    lb = b({"input": signals()})["loss_cos"]
    assert torch.equal(la, lb)


def test_amp_step_with_several_masks():
    m = make("joint", **{"PRETRAIN.NUM_MASKS": 2})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m({"input": signals()})
    loss = sum(v for k, v in out.items() if k.startswith("loss"))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in m.encoder.parameters() if p.requires_grad)


# The structured mask generator each modality plugin registers (plugins/*/bridle_*/masking.py).
PLUGIN_MASKS = {"audio": "time_freq", "image": "block", "video": "tube"}


@pytest.mark.parametrize(
    "path,mask",
    [(p, n) for p in TINY for n in ("random", PLUGIN_MASKS.get(os.path.basename(os.path.dirname(p)))) if n],
    ids=lambda v: os.path.basename(os.path.dirname(v)) if os.sep in str(v) else str(v),
)
def test_every_modality_masking_with_several_masks(path, mask):
    """Each modality's mask generators give every one of the B x M views its own mask of exactly
    num_masked tokens, and the M-view step trains."""
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.MODEL.MASK.NAME = mask
    cfg.PRETRAIN.NUM_MASKS = 3
    torch.manual_seed(0)
    model = BridleModel(cfg, "encoder").train()
    p = cfg.MODEL.PATCH_EMBED
    x = torch.randn(2, *([] if p.IN_CHANS == 1 else [p.IN_CHANS]), *p.INPUT_SIZE)
    model.init_tokenizer_codebooks(x)
    torch.manual_seed(1)
    masks = model.mask_generator(2 * 3)
    assert (masks.sum(1) == model.num_masked).all()
    assert len({tuple(r.tolist()) for r in masks}) > 1  # not one mask copied to every view
    out = model({"input": x})
    out["loss_mlm"].backward()
    assert torch.isfinite(out["loss_mlm"])


@pytest.mark.slow
def test_ddp_two_ranks_with_several_masks(toy_plugin, tmp_path):
    """tools/train_net.py --num-gpus 2 (gloo, CPU) trains the M-view encoder phase to the end."""
    import subprocess
    import sys

    out = str(tmp_path / "ddp")
    opts = toy_opts(
        out,
        **{
            "TRAINER.NAME": "encoder",
            "MODEL.TOKENIZER.COLD_START": True,
            "PRETRAIN.NUM_MASKS": 2,
            "SOLVER.MAX_ITER": 4,
            "SOLVER.CHECKPOINT_PERIOD": 0,
        },
    )
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--num-gpus", "2"] + opts,
        env=toy_plugin,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    from bridle.checkpoint import load_checkpoint_file

    ckpt = load_checkpoint_file(os.path.join(out, "model_final.pth"))
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert "NUM_MASKS: 2" in ckpt["cfg"]
