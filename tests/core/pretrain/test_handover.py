"""Phase hand-over rules when a single phase starts from MODEL.WEIGHTS."""
import os

import pytest
import torch

from bridle.checkpoint import export_encoder
from bridle.config import get_cfg
from bridle.registry import TRAINER
from toy_plugin import toy_opts


def run_phase(tmp_path, name, trainer, weights="", cold=False, iters=2):
    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(str(tmp_path / name), **{
        "TRAINER.NAME": trainer, "MODEL.WEIGHTS": weights, "MODEL.TOKENIZER.COLD_START": cold,
        "SOLVER.MAX_ITER": iters}))
    torch.manual_seed(0)
    t = TRAINER.get(trainer)(cfg)
    t.resume_or_load(resume=False)
    t.train()
    return t, os.path.join(cfg.OUTPUT_DIR, "model_final.pth")


def state(path):
    return torch.load(path, weights_only=False)["model"]


@pytest.fixture
def cold_ckpt(toy_plugin, tmp_path):
    return run_phase(tmp_path, "cold", "encoder", cold=True)[1]


def test_tokenizer_phase_alone_takes_encoder_and_fresh_codebooks(cold_ckpt, tmp_path):
    t, _ = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=1)
    before = state(cold_ckpt)
    model = t.model_without_ddp.state_dict()
    # the frozen teacher is exactly the previous encoder
    for k, v in before.items():
        if k.startswith("encoder."):
            assert torch.equal(v, model[k]), k
    # the tokenizer is a new ViT tokenizer (the checkpoint's was cold-start)
    assert any(k.startswith("tokenizer.vit.") for k in model)


def test_encoder_phase_refuses_a_checkpoint_without_trained_tokenizer(cold_ckpt, tmp_path):
    with pytest.raises(ValueError, match="needs a trained tokenizer"):
        run_phase(tmp_path, "enc2", "encoder", weights=cold_ckpt)


def test_encoder_phase_takes_trained_tokenizer_and_fresh_decoder(cold_ckpt, tmp_path):
    _, tok = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=2)
    t, _ = run_phase(tmp_path, "enc2", "encoder", weights=tok, iters=1)
    prev = state(tok)
    after = state(os.path.join(tmp_path, "enc2", "model_final.pth"))
    for k in prev:
        if k.startswith("tokenizer."):
            assert torch.equal(prev[k], after[k]), k  # frozen and taken over bitwise


def test_exported_encoder_starts_a_cold_phase(cold_ckpt, tmp_path):
    exported = str(tmp_path / "encoder.pth")
    export_encoder(cold_ckpt, exported)
    t, _ = run_phase(tmp_path, "from_export", "encoder", weights=exported, cold=True, iters=1)
    src = state(cold_ckpt)
    # the phase trained one step from the exported weights: shapes match and loading happened
    loaded = t.model_without_ddp.encoder.state_dict()
    assert set(loaded) == {k[len("encoder."):] for k in src if k.startswith("encoder.")}


def test_mismatched_weights_are_a_clear_error(cold_ckpt, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(str(tmp_path / "bad"), **{
        "TRAINER.NAME": "tokenizer", "MODEL.WEIGHTS": cold_ckpt, "MODEL.ENCODER.EMBED_DIM": 48}))
    t = TRAINER.get("tokenizer")(cfg)
    with pytest.raises(ValueError, match="does not fit"):
        t.resume_or_load(resume=False)
