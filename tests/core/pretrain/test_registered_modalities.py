"""Every registered modality's tiny config runs every phase; the full audio recipe builds the
paper's ViT-B models."""

import glob
import os

import pytest
import torch

from bridle.config import get_cfg
from bridle.modeling.bridle_model import BridleModel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = sorted(glob.glob(os.path.join(REPO, "configs", "*", "tiny_pretrain.yaml")))


def random_input(cfg, n=2):
    p = cfg.MODEL.PATCH_EMBED
    chans = [] if p.IN_CHANS == 1 else [p.IN_CHANS]
    return torch.randn(n, *chans, *p.INPUT_SIZE)


def test_every_modality_has_a_tiny_config():
    assert {os.path.basename(os.path.dirname(p)) for p in TINY} >= {"audio", "image", "video"}


@pytest.mark.parametrize("path", TINY, ids=lambda p: os.path.basename(os.path.dirname(p)))
@pytest.mark.parametrize("phase,cold", [("encoder", True), ("tokenizer", False), ("encoder", False), ("joint", False)])
def test_tiny_config_phase_forward_backward(path, phase, cold):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.MODEL.TOKENIZER.COLD_START = cold
    torch.manual_seed(0)
    model = BridleModel(cfg, phase).train()
    x = random_input(cfg)
    model.init_tokenizer_codebooks(x)
    out = model({"input": x})
    loss = sum(v for k, v in out.items() if k.startswith("loss"))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for m in model.trained_modules() for p in m.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_full_audio_recipe_builds_vit_b(capsys):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "audio", "pretrain_rq.yaml"))
    cfg.MODEL.TOKENIZER.COLD_START = False
    model = BridleModel(cfg, "tokenizer")
    counts = model.parameter_counts()
    print({k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert model.encoder.grid_size == (64, 8)
    assert 85e6 < counts["encoder"] < 87e6  # ViT-B/16 on a 1-channel input
    assert 85e6 < counts["tokenizer"] < 88e6  # a second ViT-B + projection + codebooks
    assert model.decoder.head.out_features == 4 * 256
    assert len(model.decoder.blocks) == 16
