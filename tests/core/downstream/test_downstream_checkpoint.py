"""Checkpoint formats: encoder extraction, export, load_encoder, pos-embed resizing, strict loads."""

import pytest
import torch
import torch.nn.functional as F

import bridle
from bridle.checkpoint import (
    ENCODER_FORMAT,
    export_encoder,
    extract_encoder_state,
    interpolate_pos_embed,
    load_checkpoint_file,
    load_encoder,
    load_encoder_weights,
    resize_pos_embed,
)
from bridle.modeling import sincos_pos_embed
from bridle.modeling.classifier import EncoderClassifier
from bridle.modeling.vit import build_encoder


def make_pretrain_checkpoint(cfg, path, seed=0):
    """A full BRIDLE checkpoint as the pretraining trainers write it (fvcore layout)."""
    torch.manual_seed(seed)
    enc = build_encoder(cfg)
    with torch.no_grad():  # make every tensor distinctive
        for p in enc.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    model = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    model["decoder.head.weight"] = torch.randn(8, 4)
    model["tokenizer.blocks.0.norm1.weight"] = torch.randn(4)
    model["estimator.proj.weight"] = torch.randn(4, 4)
    torch.save(
        {"model": model, "cfg": cfg.dump(), "iteration": 7, "optimizer": {"state": {}}, "trainer": {"iteration": 7}},
        path,
    )
    return enc


@pytest.fixture
def pretrained(make_cfg, tmp_path):
    cfg = make_cfg()
    path = tmp_path / "pretrain.pth"
    enc = make_pretrain_checkpoint(cfg, path)
    return cfg, path, enc


def test_extract_encoder_state_from_every_format(pretrained, tmp_path):
    cfg, path, enc = pretrained
    ref = enc.state_dict()
    full = load_checkpoint_file(path)
    exported_path = tmp_path / "enc.pth"
    export_encoder(path, exported_path)
    exported = load_checkpoint_file(exported_path)
    bare = {k: v.clone() for k, v in ref.items()}
    ddp = {"model": {f"module.{k}": v for k, v in ref.items()}}
    ddp_full = {"model": {f"module.encoder.{k}": v for k, v in ref.items()}, "iteration": 1}
    bare_with_head = dict(bare, **{"head.weight": torch.zeros(3, 64), "fc_norm.weight": torch.ones(64)})
    for ckpt in (full, exported, bare, ddp, ddp_full, bare_with_head):
        state = extract_encoder_state(ckpt)
        assert sorted(state) == sorted(ref)
        for k in ref:
            assert torch.equal(state[k], ref[k]), k
    with pytest.raises(KeyError, match="encoder"):
        extract_encoder_state({"model": {"decoder.head.weight": torch.zeros(2)}})


def test_export_meta_and_load_encoder_roundtrip(pretrained, tmp_path):
    cfg, path, enc = pretrained
    dst, timm_dst = tmp_path / "enc.pth", tmp_path / "enc_timm.pth"
    meta = export_encoder(path, dst, timm_path=timm_dst)
    assert meta == {
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 2,
        "grid_size": [4, 4],
        "format": ENCODER_FORMAT,
        "backbone": "vit",
    }
    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {"model", "cfg", "meta"} and saved["meta"] == meta
    assert all(not k.startswith("encoder.") for k in saved["model"])
    x = torch.randn(3, 1, 32, 32)
    enc.eval()
    with torch.no_grad():
        ref = enc(x)
        for loaded in (load_encoder(dst), bridle.load_encoder(str(path))):
            assert not loaded.training
            assert loaded.grid_size == (4, 4)
            assert torch.equal(loaded(x), ref)
    # the plain timm state dict loads into timm's ViT, strictly, and computes the same tokens
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    timm_vit = TimmViT(img_size=32, patch_size=8, in_chans=1, embed_dim=64, depth=2, num_heads=2, num_classes=0)
    timm_vit.load_state_dict(torch.load(timm_dst), strict=True)
    timm_vit.eval()
    with torch.no_grad():
        assert torch.allclose(timm_vit.forward_features(x), ref, atol=1e-5)


def test_pos_embed_exact_sincos_recomputation():
    old = sincos_pos_embed(64, (4, 4), cls_token=True)[None]
    old[:, 0] = 0.5  # a cls row is kept as is
    state = {"pos_embed": old, "cls_token": torch.zeros(1, 1, 64)}
    out = interpolate_pos_embed(state, (2, 4), old_grid_size=(4, 4))
    assert out["pos_embed"].shape == (1, 1 + 8, 64)
    assert torch.equal(out["pos_embed"][0, 1:], sincos_pos_embed(64, (2, 4)))
    assert torch.equal(out["pos_embed"][:, 0], old[:, 0])
    assert out["cls_token"] is state["cls_token"] and state["pos_embed"] is old  # input untouched
    # 3 of 6 rows: the table of the new grid is a prefix of the old one per row (same positions)
    table, method = resize_pos_embed(sincos_pos_embed(64, (6, 4), cls_token=True)[None], (3, 4), old_grid_size=(6, 4))
    assert method == "sincos" and torch.equal(table[0, 1:], sincos_pos_embed(64, (3, 4)))


def test_pos_embed_interpolation_of_a_learned_table():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(1, 1 + 16, 32, generator=g)
    out = interpolate_pos_embed({"pos_embed": old}, (8, 8))  # (4, 4) inferred (square)
    ref = (
        F.interpolate(
            old[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2), size=(8, 8), mode="bicubic", align_corners=False
        )
        .permute(0, 2, 3, 1)
        .reshape(1, 64, 32)
    )
    assert torch.allclose(out["pos_embed"][:, 1:], ref)
    assert torch.equal(out["pos_embed"][:, 0], old[:, 0])
    # 3-D grids use trilinear, 1-D linear
    old3 = torch.randn(1, 1 + 2 * 4 * 4, 32, generator=g)
    t3, m3 = resize_pos_embed(old3, (4, 4, 4), old_grid_size=(2, 4, 4))
    assert m3 == "trilinear" and t3.shape == (1, 1 + 64, 32)
    t1, m1 = resize_pos_embed(torch.randn(1, 1 + 10, 32, generator=g), (20,))
    assert m1 == "linear" and t1.shape == (1, 21, 32)
    # same grid: unchanged; ambiguous or inconsistent grids: clear errors
    same, m = resize_pos_embed(old, (4, 4))
    assert m == "unchanged" and same is old
    with pytest.raises(ValueError, match="old_grid_size"):
        resize_pos_embed(torch.randn(1, 1 + 512, 8), (32, 8))  # 64x8 or 32x16?
    t, _ = resize_pos_embed(torch.randn(1, 1 + 512, 8), (32, 8), old_grid_size=(64, 8))
    assert t.shape == (1, 1 + 256, 8)
    with pytest.raises(ValueError, match="patch rows"):
        resize_pos_embed(old, (8, 8), old_grid_size=(3, 4))


def test_load_encoder_weights_at_another_grid_uses_stored_grid(pretrained, tmp_path, make_cfg):
    cfg, path, enc = pretrained
    dst = tmp_path / "enc.pth"
    export_encoder(path, dst)
    # 16x32 input -> 2x4 grid (ambiguous from the row count alone: the stored meta decides)
    model = EncoderClassifier(make_cfg("MODEL.PATCH_EMBED.INPUT_SIZE", [16, 32], sub="small"))
    for src in (dst, path):  # exported (meta.grid_size) and full checkpoint (stored config)
        report = load_encoder_weights(model, src)
        assert report.pos_embed == "sincos" and not report.missing and not report.mismatched
        assert torch.equal(model.encoder.pos_embed[0, 1:], sincos_pos_embed(64, (2, 4)))
        assert torch.equal(model.encoder.blocks[1].mlp.fc2.weight, enc.blocks[1].mlp.fc2.weight)


def test_load_encoder_weights_strictness(pretrained, make_cfg):
    cfg, path, enc = pretrained
    model = EncoderClassifier(make_cfg())
    report = load_encoder_weights(model, str(path))
    assert report.loaded == sorted(model.encoder.state_dict())
    assert report.unexpected == [] and report.missing == []
    # nothing matches (other width): refused even when not strict
    wide = EncoderClassifier(make_cfg("MODEL.ENCODER.EMBED_DIM", 96, sub="wide"))
    with pytest.raises(RuntimeError, match="No encoder weight"):
        load_encoder_weights(wide, str(path), strict_encoder=False)
    # deeper model: block 2 missing -> strict raises, non-strict loads and reports
    deep = EncoderClassifier(make_cfg("MODEL.ENCODER.DEPTH", 3, sub="deep"))
    with pytest.raises(RuntimeError, match="blocks.2"):
        load_encoder_weights(deep, str(path))
    rep = load_encoder_weights(deep, str(path), strict_encoder=False)
    assert rep.missing and all(k.startswith("blocks.2.") for k in rep.missing)
    # shallower model: extra checkpoint blocks are only reported
    shallow = EncoderClassifier(make_cfg("MODEL.ENCODER.DEPTH", 1, sub="shallow"))
    rep = load_encoder_weights(shallow, str(path))
    assert rep.unexpected and all(k.startswith("blocks.1.") for k in rep.unexpected)
    with pytest.raises(KeyError, match="encoder"):
        load_encoder_weights(model, {"model": {"decoder.x": torch.zeros(1)}})
