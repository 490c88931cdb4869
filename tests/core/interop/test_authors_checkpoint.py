"""Authors' checkpoints <-> ours: a checkpoint built with their key names and tensor layouts
(synthetic values), converted, loaded into our model; round trip ours -> theirs -> ours."""

import math

import numpy as np
import pytest
import torch

from bridle.config import get_cfg
from bridle.interop.authors import detect_table_layout, from_authors, to_authors
from bridle.modeling.bridle_model import BridleModel
from bridle.modeling.pos_embed import sincos_pos_embed

GRID = (4, 2)  # non-square: their table is the one of the swapped grid
D, DD, DE, C, L, K, H = 32, 16, 16, 8, 2, 16, 2  # encoder, decoder, estimator, code dims; levels; codes; heads


def their_sincos(dim, hw, cls_token):
    """Their table, written from their equations: for an (h, w) table grid, row r encodes
    x = r % w in the first half of the channels and y = r // w in the second, each half
    [sin(p * omega), cos(p * omega)] with omega_i = 10000^(-i / (dim / 4))."""
    h, w = hw
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    rows = []
    for r in range(h * w):
        x, y = r % w, r // w
        rows.append(np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)]))
    t = torch.tensor(np.stack(rows), dtype=torch.float32)
    return torch.cat([torch.zeros(1, dim), t]) if cls_token else t


def our_cfg(**extra):
    cfg = get_cfg(load_plugins=False)
    opts = {
        "MODEL.PATCH_EMBED.NAME": "conv",
        "MODEL.PATCH_EMBED.IN_CHANS": 1,
        "MODEL.PATCH_EMBED.INPUT_SIZE": [32, 16],
        "MODEL.PATCH_EMBED.PATCH_SIZE": [8, 8],
        "MODEL.ENCODER.SIZE": "",
        "MODEL.ENCODER.EMBED_DIM": D,
        "MODEL.ENCODER.DEPTH": 1,
        "MODEL.ENCODER.NUM_HEADS": H,
        "MODEL.TOKENIZER.SIZE": "",
        "MODEL.TOKENIZER.EMBED_DIM": D,
        "MODEL.TOKENIZER.DEPTH": 1,
        "MODEL.TOKENIZER.NUM_HEADS": H,
        "MODEL.DECODER.EMBED_DIM": DD,
        "MODEL.DECODER.DEPTH": 2,
        "MODEL.DECODER.NUM_HEADS": H,
        "MODEL.DECODER.ATTENTION": "window",
        "MODEL.DECODER.WINDOW_SIZE": [2, 2],
        "MODEL.DECODER.SHIFT_SIZE": [1, 0],
        "MODEL.DECODER.BLOCK": "swin_v2",
        "MODEL.ESTIMATOR.EMBED_DIM": DE,
        "MODEL.ESTIMATOR.DEPTH": 1,
        "MODEL.ESTIMATOR.NUM_HEADS": H,
        "MODEL.QUANTIZER.NUM_LEVELS": L,
        "MODEL.QUANTIZER.CODEBOOK_SIZE": K,
        "MODEL.QUANTIZER.CODE_DIM": C,
        "MODEL.MASK.RATIO": 0.5,
    }
    opts.update(extra)
    for k, v in opts.items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return cfg


def _timm_block(p, dim):
    return {
        p + "norm1.weight": (dim,),
        p + "norm1.bias": (dim,),
        p + "attn.qkv.weight": (3 * dim, dim),
        p + "attn.qkv.bias": (3 * dim,),
        p + "attn.proj.weight": (dim, dim),
        p + "attn.proj.bias": (dim,),
        p + "norm2.weight": (dim,),
        p + "norm2.bias": (dim,),
        p + "mlp.fc1.weight": (4 * dim, dim),
        p + "mlp.fc1.bias": (4 * dim,),
        p + "mlp.fc2.weight": (dim, 4 * dim),
        p + "mlp.fc2.bias": (dim,),
    }


def _their_swin_block(p, dim):
    return {
        p + "attn.qkv.weight": (3 * dim, dim),
        p + "attn.qkv.bias": (3 * dim,),
        p + "attn.proj.weight": (dim, dim),
        p + "attn.proj.bias": (dim,),
        p + "attn.tau": (H,),
        p + "attn.meta_mlp.model.0.weight": (384, 2),
        p + "attn.meta_mlp.model.0.bias": (384,),
        p + "attn.meta_mlp.model.3.weight": (H, 384),
        p + "attn.meta_mlp.model.3.bias": (H,),
        p + "norm1.weight": (dim,),
        p + "norm1.bias": (dim,),
        p + "mlp.model.0.weight": (4 * dim, dim),
        p + "mlp.model.0.bias": (4 * dim,),
        p + "mlp.model.2.weight": (dim, 4 * dim),
        p + "mlp.model.2.bias": (dim,),
        p + "norm2.weight": (dim,),
        p + "norm2.bias": (dim,),
    }


def their_checkpoint(soft_code=1):
    """Their pretraining model's state: names and shapes as in their encoder_decoder.py /
    tokenizer.py / rq_quantizations.py, random values, their position tables."""
    n = math.prod(GRID)
    shapes = {
        "encoder_decoder.cls_token": (1, 1, D),
        "encoder_decoder.patch_embed.proj.weight": (D, 1, 8, 8),
        "encoder_decoder.patch_embed.proj.bias": (D,),
        "encoder_decoder.norm.weight": (D,),
        "encoder_decoder.norm.bias": (D,),
        "encoder_decoder.decoder_embed.weight": (DD, D),
        "encoder_decoder.decoder_embed.bias": (DD,),
        "encoder_decoder.mask_token": (1, 1, DD),
        "encoder_decoder.decoder_norm.weight": (DD,),
        "encoder_decoder.decoder_norm.bias": (DD,),
        "encoder_decoder.decoder_pred.weight": (L * K * soft_code, DD),
        "encoder_decoder.decoder_pred.bias": (L * K * soft_code,),
        "tokenizer.cls_token": (1, 1, D),
        "tokenizer.patch_embed.proj.weight": (D, 1, 8, 8),
        "tokenizer.patch_embed.proj.bias": (D,),
        "tokenizer.norm.weight": (D,),
        "tokenizer.norm.bias": (D,),
        "tokenizer.cold_start_encoder.weight": (C, D),
        "tokenizer.quantize_layer.0.weight": (D, D),
        "tokenizer.quantize_layer.0.bias": (D,),
        "tokenizer.quantize_layer.2.weight": (C, D),
        "tokenizer.quantize_layer.2.bias": (C,),
        "tokenizer.estimator_embed.weight": (DE, C),
        "tokenizer.estimator_embed.bias": (DE,),
        "tokenizer.estimator_norm.weight": (DE,),
        "tokenizer.estimator_norm.bias": (DE,),
        "tokenizer.estimator_pred.weight": (D, DE),
        "tokenizer.estimator_pred.bias": (D,),
    }
    shapes.update(_timm_block("encoder_decoder.blocks.0.", D))
    shapes.update(_timm_block("tokenizer.blocks.0.", D))
    shapes.update(_timm_block("tokenizer.estimator_blocks.0.", DE))
    for i in range(2):
        shapes.update(_their_swin_block(f"encoder_decoder.decoder_blocks.{i}.", DD))
    for l in range(L):
        shapes[f"tokenizer.quantizer.codebooks.{l}.weight"] = (K + 1, C)
        shapes[f"tokenizer.quantizer.codebooks.{l}.cluster_size_ema"] = (K,)
        shapes[f"tokenizer.quantizer.codebooks.{l}.embed_ema"] = (K, C)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    for i in range(2):
        state[f"encoder_decoder.decoder_blocks.{i}.attn.tau"] = torch.tensor([0.7, 0.004])  # 2nd: under the clamp
    for l in range(L):
        state[f"tokenizer.quantizer.codebooks.{l}.weight"][-1] = 0  # their padding row
        state[f"tokenizer.quantizer.codebooks.{l}.initted"] = torch.tensor([1.0])
    swapped = GRID[::-1]  # their patch_hw of a non-square grid
    state["encoder_decoder.pos_embed"] = their_sincos(D, swapped, True)[None]
    state["encoder_decoder.decoder_pos_embed"] = their_sincos(DD, swapped, True)[None]
    state["tokenizer.pos_embed"] = their_sincos(D, swapped, True)[None]
    state["tokenizer.estimator_pos_embed"] = their_sincos(DE, swapped, False)[None]
    assert state["encoder_decoder.pos_embed"].shape == (1, n + 1, D)
    return state


def test_their_checkpoint_loads_into_our_model_exactly():
    theirs = their_checkpoint()
    model = BridleModel(our_cfg(), "encoder")
    ours, report = from_authors(theirs, model.state_dict(), GRID)
    model.load_state_dict(ours, strict=False)
    s = model.state_dict()
    assert not report.missing or set(report.missing) <= {"tokenizer.quantizer.num_updates"}
    # encoder, decoder, tokenizer, estimator: bitwise the same values
    for ours_key, their_key in [
        ("encoder.blocks.0.attn.qkv.weight", "encoder_decoder.blocks.0.attn.qkv.weight"),
        ("encoder.patch_embed.proj.weight", "encoder_decoder.patch_embed.proj.weight"),
        ("decoder.embed.weight", "encoder_decoder.decoder_embed.weight"),
        ("decoder.head.weight", "encoder_decoder.decoder_pred.weight"),
        (
            "decoder.blocks.1.block.attn.position_bias.mlp.3.weight",
            "encoder_decoder.decoder_blocks.1.attn.meta_mlp.model.3.weight",
        ),
        ("decoder.blocks.0.block.mlp.fc2.weight", "encoder_decoder.decoder_blocks.0.mlp.model.2.weight"),
        ("tokenizer.vit.blocks.0.mlp.fc1.weight", "tokenizer.blocks.0.mlp.fc1.weight"),
        ("tokenizer.proj.2.weight", "tokenizer.quantize_layer.2.weight"),
        ("estimator.blocks.0.attn.proj.weight", "tokenizer.estimator_blocks.0.attn.proj.weight"),
        ("estimator.head.bias", "tokenizer.estimator_pred.bias"),
    ]:
        assert torch.equal(s[ours_key], theirs[their_key]), ours_key
    # position tables: as stored (their transposed layout recognised), cls rows where ours have none dropped
    assert torch.equal(s["encoder.pos_embed"], theirs["encoder_decoder.pos_embed"])
    assert torch.equal(s["decoder.pos_embed"], theirs["encoder_decoder.decoder_pos_embed"][:, 1:])
    assert torch.equal(s["estimator.pos_embed"], theirs["tokenizer.estimator_pos_embed"])
    assert report.pos_tables["encoder.pos_embed"].startswith("transposed")
    assert not torch.allclose(s["encoder.pos_embed"][0, 1:], sincos_pos_embed(D, GRID))  # not our table of the grid
    # codebooks: their padding row dropped; initialised
    for l in range(L):
        assert torch.equal(
            s["tokenizer.quantizer.codebook"][l], theirs[f"tokenizer.quantizer.codebooks.{l}.weight"][:-1]
        )
    assert bool(s["tokenizer.quantizer.initialized"])
    # temperature: our cosine scale is their 1 / tau.clamp(min=0.01)
    scale = model.decoder.blocks[0].block.attn.scale()
    torch.testing.assert_close(scale, 1.0 / torch.tensor([0.7, 0.004]).clamp(min=0.01))
    # their EMA statistics have no counterpart: reported, not silently dropped
    assert any("cluster_size_ema" in k for k, _ in report.skipped)


def test_cold_start_tokenizer_and_a_head_of_another_shape():
    theirs = their_checkpoint(soft_code=2)  # their soft codes add k heads: 2 x wider prediction
    model = BridleModel(our_cfg(**{"MODEL.TOKENIZER.COLD_START": True}), "encoder")
    before = model.state_dict()["decoder.head.weight"].clone()
    ours, report = from_authors(theirs, model.state_dict(), GRID)
    model.load_state_dict(ours, strict=False)
    s = model.state_dict()
    assert torch.equal(s["tokenizer.proj.weight"], theirs["tokenizer.cold_start_encoder.weight"])
    assert torch.equal(s["tokenizer.pos_embed"], theirs["tokenizer.pos_embed"][:, 1:])
    assert torch.equal(s["decoder.head.weight"], before)  # does not fit: left as initialised
    assert any(k == "encoder_decoder.decoder_pred.weight" for k, _ in report.skipped)


def test_round_trip_ours_theirs_ours_is_exact_and_regenerate_writes_our_tables():
    torch.manual_seed(0)
    model = BridleModel(our_cfg(), "encoder")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        model.tokenizer.quantizer.codebook.normal_()
    src = model.state_dict()
    theirs, _ = to_authors(src, GRID)
    assert theirs["encoder_decoder.decoder_pos_embed"].shape == (1, 9, DD)  # their cls row added
    assert theirs["tokenizer.quantizer.codebooks.0.weight"].shape == (K + 1, C)
    back, report = from_authors(theirs, src, GRID)
    for k, v in src.items():
        if k == "tokenizer.quantizer.num_updates":
            continue
        if k.endswith("attn.logit_scale"):  # stored as their temperature exp(-l): within float rounding
            torch.testing.assert_close(back[k], v.clamp(max=math.log(100.0)), rtol=0, atol=1e-6)
            continue
        assert torch.equal(back[k], v), k
    regen, report = from_authors(theirs, src, GRID, pos_embed="regenerate")
    assert torch.equal(regen["encoder.pos_embed"][0], sincos_pos_embed(D, GRID, cls_token=True))
    assert torch.equal(regen["decoder.pos_embed"][0], sincos_pos_embed(DD, GRID))
    # ours -> theirs with their own tables: recognised as their transposed layout
    theirs_regen, _ = to_authors(src, GRID, pos_embed="regenerate")
    assert torch.allclose(theirs_regen["encoder_decoder.pos_embed"][0], their_sincos(D, GRID[::-1], True), atol=1e-6)
    assert detect_table_layout(theirs_regen["encoder_decoder.pos_embed"], GRID, has_cls=True) == "transposed"


def test_not_an_authors_checkpoint_is_a_clear_error():
    model = BridleModel(our_cfg(), "encoder")
    with pytest.raises(KeyError, match="encoder_decoder"):
        from_authors({"encoder.cls_token": torch.zeros(1, 1, D)}, model.state_dict(), GRID)


def test_tool_converts_both_ways(tmp_path):
    """What tools/convert_checkpoint.py runs: --from-authors, then --to-authors back."""
    from bridle.interop.convert import convert_from_authors, convert_to_authors

    cfg = our_cfg()
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(cfg.dump())
    src = tmp_path / "theirs.pth"
    theirs = their_checkpoint()
    torch.save({"model": theirs, "epoch": 130}, src)
    ours = tmp_path / "ours.pth"
    convert_from_authors(str(src), str(ours), str(cfg_path))
    ck = torch.load(ours, weights_only=True)
    assert torch.equal(
        ck["model"]["encoder.blocks.0.attn.qkv.weight"], theirs["encoder_decoder.blocks.0.attn.qkv.weight"]
    )
    back = tmp_path / "back.pth"
    convert_to_authors(str(ours), str(back))
    ck2 = torch.load(back, weights_only=True)["model"]
    for k in (
        "encoder_decoder.pos_embed",
        "encoder_decoder.blocks.0.mlp.fc2.weight",
        "tokenizer.estimator_pred.weight",
        "tokenizer.quantizer.codebooks.1.weight",
        "encoder_decoder.decoder_blocks.1.attn.meta_mlp.model.0.bias",
    ):
        assert torch.equal(ck2[k], theirs[k]), k
