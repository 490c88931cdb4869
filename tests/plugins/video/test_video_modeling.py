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


def test_tube_random_mask_tubes_then_random_tokens(video_cfg):
    """MASK_TUBE_RATIO of the positions hidden at every step, random tokens elsewhere up to
    MODEL.MASK.RATIO: exact counts, reproducible for a generator, different per sample."""
    cfg = video_cfg.clone()
    cfg.defrost()
    cfg.MODEL.MASK.NAME, cfg.MODEL.MASK.RATIO, cfg.INPUT.VIDEO.MASK_TUBE_RATIO = "tube_random", 0.75, 0.5
    grid = (8, 4, 4)
    gen = build_mask_generator(cfg, grid)
    assert gen.num_masked == 96 and gen.num_tube_positions == 8
    mask = gen(32, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 96).all()
    per_step = mask.view(32, 8, 16)
    tubes = per_step.all(dim=1)  # positions hidden at every step
    assert (tubes.sum(1) >= 8).all()  # the tubes (random tokens may complete another one, rarely)
    assert (tubes.sum(1) == 8).float().mean() > 0.8
    rest = per_step & ~tubes[:, None, :]
    assert ((rest.sum(2) > 0).sum(1) >= 6).all()  # the other masked tokens: lone ones, spread over the steps
    assert not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, gen(32, generator=torch.Generator().manual_seed(0)))
    assert gen(2, device=torch.device("meta")).shape == (2, 128)  # no host sync
    cfg.INPUT.VIDEO.MASK_TUBE_RATIO = 0.9
    with pytest.raises(ValueError, match="MASK_TUBE_RATIO 0.9"):
        build_mask_generator(cfg, grid)
