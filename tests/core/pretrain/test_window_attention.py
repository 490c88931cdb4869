import torch
from timm.models.vision_transformer import Block

from bridle.modeling.window_attention import (
    WindowBlock,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def test_partition_roundtrip_any_dims():
    for grid, win in (((8,), (4,)), ((8, 4), (4, 4)), ((4, 6, 4), (2, 3, 2))):
        n = 1
        for g in grid:
            n *= g
        x = torch.randn(3, n, 5)
        w = window_partition(x, grid, win)
        assert w.shape[1] == torch.tensor(win).prod()
        assert torch.equal(window_reverse(w, grid, win, 3), x)


def test_first_window_is_the_top_left_block():
    x = torch.arange(64.0).view(1, 64, 1)  # grid 8 x 8
    w = window_partition(x, (8, 8), (4, 4))
    expected = [r * 8 + c for r in range(4) for c in range(4)]
    assert w[0, :, 0].tolist() == expected


def test_window_covering_the_grid_equals_global_attention():
    torch.manual_seed(0)
    blk = Block(16, 2, qkv_bias=True)
    x = torch.randn(2, 32, 16)
    wb = WindowBlock(blk, (8, 4), (8, 4), (0, 0))
    torch.testing.assert_close(wb(x), blk(x))


def test_shift_mask_separates_wrapped_regions():
    m = shifted_window_mask((8, 4), (4, 4), (2, 0))
    assert m.shape == (2, 16, 16)
    assert m[0].all()  # the first window holds no wrapped tokens
    last = m[1]
    # in the last window rows 0-1 (grid rows 6-7) and rows 2-3 (wrapped grid rows 0-1) are apart
    assert last[0, 0] and not last[0, 8] and last[8, 12]


# ---------------------------------------------------------------- Swin-v2 block
import math  # noqa: E402

import pytest  # noqa: E402

from bridle.modeling.decoder import DECODER_BLOCK, MaskedTokenDecoder  # noqa: E402
from bridle.modeling.swin_v2_block import SwinV2Block, log_relative_coords  # noqa: E402


def _naive_cosine_attention(attn, x, window_mask):
    """Reference written from the equations: softmax(cos(q, k) / tau + B(rel) + M) v per head,
    with an explicit loop over windows and heads."""
    bw, t, c = x.shape
    h = attn.num_heads
    qkv = attn.qkv(x).reshape(bw, t, 3, h, c // h)
    rel = log_relative_coords(attn.window).reshape(t * t, -1)
    bias = attn.position_bias.mlp(rel).reshape(t, t, h)  # [T, T, H]
    out = torch.zeros(bw, t, c)
    nw = window_mask.shape[0] if window_mask is not None else 1
    for n in range(bw):
        for head in range(h):
            q, k, v = qkv[n, :, 0, head], qkv[n, :, 1, head], qkv[n, :, 2, head]
            cos = (q @ k.T) / (q.norm(dim=-1)[:, None] * k.norm(dim=-1)[None, :])
            scale = math.exp(min(float(attn.logit_scale[head]), math.log(100.0)))
            logits = cos * scale + bias[:, :, head]
            if window_mask is not None:
                logits = logits.masked_fill(~window_mask[n % nw], float("-inf"))
            out[n, :, head * (c // h) : (head + 1) * (c // h)] = torch.softmax(logits, -1) @ v
    return attn.proj(out)


def test_swin_v2_attention_through_sdpa_equals_a_naive_softmax():
    torch.manual_seed(0)
    blk = SwinV2Block(16, 2, (2, 3)).eval()
    with torch.no_grad():
        blk.attn.logit_scale.copy_(torch.tensor([0.7, 5.0]))  # the second head is clamped to log(100)
        for p in blk.attn.position_bias.parameters():
            p.normal_(0, 0.5)
    mask = shifted_window_mask((4, 6), (2, 3), (1, 1))  # [4 windows, 6, 6]
    x = torch.randn(2 * 4, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(blk.attn(x, mask), _naive_cosine_attention(blk.attn, x, mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(blk.attn(x), _naive_cosine_attention(blk.attn, x, None), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "grid,window,shift", [((6, 4), (3, 2), (1, 1)), ((4, 4, 2), (2, 2, 2), (1, 0, 1)), ((8,), (4,), (2,))]
)
def test_swin_v2_window_block_shapes_on_any_grid(grid, window, shift):
    torch.manual_seed(0)
    n = math.prod(grid)
    for s in (tuple(0 for _ in grid), shift):
        wb = WindowBlock(SwinV2Block(8, 2, window), grid, window, s)
        y = wb(torch.randn(3, n, 8))
        assert y.shape == (3, n, 8) and torch.isfinite(y).all()
        y.sum().backward()  # every parameter gets a gradient
        assert all(p.grad is not None for p in wb.parameters())


def test_swin_v2_shifted_window_never_attends_across_the_boundary():
    # which inputs can move an output: the Jacobian's support must be exactly the shifted
    # windows' regions (per-token norms and MLP: only attention mixes tokens)
    torch.manual_seed(0)
    grid, window, shift = (8, 4), (4, 4), (2, 0)
    wb = WindowBlock(SwinV2Block(8, 2, window), grid, window, shift).eval()
    x = torch.randn(1, 32, 8)
    r = torch.randn(8)  # a random read-out (a plain sum of a LayerNorm output is constant)
    jac = torch.autograd.functional.jacobian(lambda z: (wb(z) * r).sum(-1), x)[0, :, 0].abs().sum(-1)  # [out, in]
    # expected: rows are rolled by -2; tokens attend within their 4x4 window of the rolled grid
    # and, in the last window, only within the same side of the wrap (rows 6-7 | rows 0-1)
    rolled_row = (torch.arange(8) - 2) % 8  # rolled row of every original row
    row = torch.arange(32) // 4
    win = rolled_row[row] // 4
    region = torch.where((win == 1) & (rolled_row[row] >= 6), 2, win)  # wrapped rows form their own region
    allowed = region[:, None] == region[None, :]
    assert torch.all(jac[~allowed] == 0)
    assert torch.all(jac[allowed] > 0)


def test_decoder_block_option_is_registered_and_used():
    assert set(DECODER_BLOCK.names()) >= {"prenorm", "swin_v2"}
    torch.manual_seed(0)
    for attention in ("window", "global"):
        dec = MaskedTokenDecoder(16, (8, 4), 10, 16, 2, 2, attention, (4, 4), (2, 0), block="swin_v2")
        assert all(isinstance(b.block, SwinV2Block) for b in dec.blocks)
        ids = torch.randperm(32)[None].expand(2, -1)
        out = dec(torch.randn(2, 1 + 8, 16), ids[:, :8], ids[:, 8:])
        assert out.shape == (2, 24, 10)
    assert dec.blocks[0].window == (8, 4)  # global attention: one window covering the grid
    with pytest.raises(KeyError, match="DECODER_BLOCK"):
        MaskedTokenDecoder(16, (8, 4), 10, 16, 2, 2, "window", (4, 4), (2, 0), block="postnorm_v3")
