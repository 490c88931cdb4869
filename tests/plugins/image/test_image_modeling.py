import pytest
import torch

from bridle.modeling import build_mask_generator, build_patch_embed


def test_image_patch_embed_vit_b16_grid(image_cfg):
    image_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [224, 224]
    image_cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [16, 16]
    embed = build_patch_embed(image_cfg, embed_dim=8)
    assert embed.grid_size == (14, 14) and embed.num_patches == 196
    tokens = embed(torch.randn(2, 3, 224, 224))
    assert tokens.shape == (2, 196, 8)


def test_image_patch_embed_rejects_clip_input(image_cfg):
    image_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [16, 224, 224]
    image_cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [2, 16, 16]
    with pytest.raises(ValueError, match="'image' needs a 2-D input"):
        build_patch_embed(image_cfg, embed_dim=8)


def _adjacent_masked_pairs(mask_2d):
    """Fraction of horizontally/vertically adjacent pairs that are both masked."""
    m = mask_2d.float()
    both = (m[:, 1:, :] * m[:, :-1, :]).mean() + (m[:, :, 1:] * m[:, :, :-1]).mean()
    return float(both / 2)


@pytest.mark.parametrize("ratio", [0.4, 0.8])
def test_block_mask_exact_count_and_blockwise(image_cfg, ratio):
    image_cfg.MODEL.MASK.NAME = "block"
    image_cfg.MODEL.MASK.RATIO = ratio
    gen = build_mask_generator(image_cfg, (14, 14))
    assert gen.num_masked == round(196 * ratio)
    mask = gen(64, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (64, 196)
    assert (mask.sum(1) == gen.num_masked).all()
    same = gen(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, same)
    # Blocks make masked patches cluster: far more masked neighbour pairs than random masking,
    # whose expected rate is ratio**2.
    assert _adjacent_masked_pairs(mask.view(64, 14, 14)) > ratio**2 + 0.05


def test_block_mask_rejects_non_2d_grid(image_cfg):
    image_cfg.MODEL.MASK.NAME = "block"
    with pytest.raises(ValueError, match="2-D patch grid"):
        build_mask_generator(image_cfg, (8, 14, 14))
