"""The "image" patch embedder: the core strided-conv embedder over an RGB [C, H, W] input
(ViT-B/16 at 224: 14 x 14 = 196 patches)."""

from bridle.registry import PATCH_EMBED


@PATCH_EMBED.register(name="image")
def build_image_patch_embed(cfg, embed_dim: int):
    p = cfg.MODEL.PATCH_EMBED
    if len(p.INPUT_SIZE) != 2 or len(p.PATCH_SIZE) != 2:
        raise ValueError(
            "MODEL.PATCH_EMBED.NAME 'image' needs a 2-D input: INPUT_SIZE [H, W] and PATCH_SIZE "
            f"[ph, pw]; got INPUT_SIZE {list(p.INPUT_SIZE)}, PATCH_SIZE {list(p.PATCH_SIZE)}."
        )
    return PATCH_EMBED.get("conv")(cfg, embed_dim)
