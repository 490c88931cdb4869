import pytest
import torch

from bridle.modeling import build_mask_generator, build_patch_embed


def test_tubelet_patch_embed_videomae_grid(video_cfg):
    video_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [16, 224, 224]
    embed = build_patch_embed(video_cfg, embed_dim=8)
    assert embed.grid_size == (8, 14, 14) and embed.num_patches == 1568
    assert embed(torch.randn(1, 3, 16, 224, 224)).shape == (1, 1568, 8)


def test_tubelet_patch_embed_rejects_image_input(video_cfg):
    video_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [224, 224]
    video_cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [16, 16]
    with pytest.raises(ValueError, match="'tubelet' needs a clip input"):
        build_patch_embed(video_cfg, embed_dim=8)


@pytest.mark.parametrize("grid", [(8, 14, 14), (3, 4, 5), (6, 50)])
def test_tube_mask_same_over_time_exact_count(video_cfg, grid):
    gen = build_mask_generator(video_cfg, grid)
    steps, positions = grid[0], int(torch.tensor(grid[1:]).prod())
    assert gen.num_masked == steps * round(positions * 0.9)
    mask = gen(16, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (16, steps * positions) and mask.dtype == torch.bool
    assert (mask.sum(1) == gen.num_masked).all()
    per_step = mask.view(16, steps, positions)
    assert (per_step == per_step[:, :1]).all()  # one spatial mask for every time step
    assert not (per_step[0, 0] == per_step[1, 0]).all()  # but a different one per sample
    assert torch.equal(mask, gen(16, generator=torch.Generator().manual_seed(0)))


def test_tube_mask_runs_without_host_sync(video_cfg):
    # On the meta device any .item()/.cpu()/data-dependent host read would fail.
    gen = build_mask_generator(video_cfg, (8, 14, 14))
    mask = gen(4, device=torch.device("meta"))
    assert mask.device.type == "meta" and mask.shape == (4, 1568)


def test_tube_mask_needs_a_time_axis(video_cfg):
    with pytest.raises(ValueError, match="\\[time, \\*space\\]"):
        build_mask_generator(video_cfg, (196,))
