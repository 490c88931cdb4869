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
