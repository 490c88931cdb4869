"""PATCH_EMBED entry "spectrogram": the core ConvPatchEmbed on a one-channel (time, mel) input.

It only checks that the patch-embed config matches the features the datasets produce, so a
mismatch (e.g. ESC-50's 512 frames with a 1024-frame model) fails at build time with the keys
to fix instead of as a shape error deep in the model.
"""

from bridle.modeling import ConvPatchEmbed
from bridle.registry import PATCH_EMBED


@PATCH_EMBED.register(name="spectrogram")
def build_spectrogram_patch_embed(cfg, embed_dim: int) -> ConvPatchEmbed:
    p, a = cfg.MODEL.PATCH_EMBED, cfg.INPUT.AUDIO
    input_size = [int(s) for s in p.INPUT_SIZE]
    if int(p.IN_CHANS) != 1:
        raise ValueError(
            f"PATCH_EMBED 'spectrogram' takes one-channel fbanks: MODEL.PATCH_EMBED.IN_CHANS must "
            f"be 1; got {p.IN_CHANS}."
        )
    expected = [int(a.TARGET_LENGTH), int(a.NUM_MEL_BINS)]
    if input_size != expected:
        raise ValueError(
            f"PATCH_EMBED 'spectrogram': MODEL.PATCH_EMBED.INPUT_SIZE {input_size} must be "
            f"[INPUT.AUDIO.TARGET_LENGTH, INPUT.AUDIO.NUM_MEL_BINS] = {expected} (time, mel)."
        )
    return ConvPatchEmbed(input_size, p.PATCH_SIZE, 1, embed_dim)
