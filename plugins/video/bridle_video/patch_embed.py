"""The "tubelet" patch embedder: the core strided-conv embedder over a clip [C, T, H, W]
(VideoMAE tubelets 2 x 16 x 16: 16 x 224 x 224 -> 8 x 14 x 14 = 1568 patches, time first)."""

from bridle.registry import PATCH_EMBED


@PATCH_EMBED.register(name="tubelet")
def build_tubelet_patch_embed(cfg, embed_dim: int):
    p = cfg.MODEL.PATCH_EMBED
    if len(p.INPUT_SIZE) != 3 or len(p.PATCH_SIZE) != 3:
        raise ValueError(
            "MODEL.PATCH_EMBED.NAME 'tubelet' needs a clip input: INPUT_SIZE [T, H, W] and "
            f"PATCH_SIZE [pt, ph, pw]; got INPUT_SIZE {list(p.INPUT_SIZE)}, PATCH_SIZE {list(p.PATCH_SIZE)}."
        )
    return PATCH_EMBED.get("conv")(cfg, embed_dim)
