"""Tiny checkpoints for the export / tokenizer tests: image-shaped (3 x 32 x 32, 8 x 8 patches)
and audio-shaped (one channel, 64 frames x 32 mel, 16 x 16 patches: a non-square 4 x 2 grid)."""

import torch

from bridle.config import get_cfg
from bridle.modeling.classifier import EncoderClassifier
from bridle.modeling.tokenizer import build_tokenizer
from bridle.modeling.vit import build_encoder

TINY = ["MODEL.ENCODER.SIZE", "", "MODEL.ENCODER.EMBED_DIM", 64, "MODEL.ENCODER.DEPTH", 2, "MODEL.ENCODER.NUM_HEADS", 2]
TINY_TOKENIZER = ["MODEL.TOKENIZER.SIZE", "", "MODEL.TOKENIZER.EMBED_DIM", 32, "MODEL.TOKENIZER.DEPTH", 1]
TINY_TOKENIZER += ["MODEL.TOKENIZER.NUM_HEADS", 2, "MODEL.QUANTIZER.NUM_LEVELS", 2, "MODEL.QUANTIZER.CODEBOOK_SIZE", 16]
TINY_TOKENIZER += ["MODEL.QUANTIZER.CODE_DIM", 8]
IMAGE = [
    "MODEL.PATCH_EMBED.NAME",
    "image",
    "MODEL.PATCH_EMBED.INPUT_SIZE",
    [32, 32],
    "MODEL.PATCH_EMBED.PATCH_SIZE",
    [8, 8],
]
IMAGE += ["MODEL.PATCH_EMBED.IN_CHANS", 3]
AUDIO = ["MODEL.PATCH_EMBED.NAME", "spectrogram", "MODEL.PATCH_EMBED.INPUT_SIZE", [64, 32]]
AUDIO += ["MODEL.PATCH_EMBED.PATCH_SIZE", [16, 16], "MODEL.PATCH_EMBED.IN_CHANS", 1]
AUDIO += ["INPUT.AUDIO.TARGET_LENGTH", 64, "INPUT.AUDIO.NUM_MEL_BINS", 32]


def tiny_cfg(modality_opts, *extra):
    cfg = get_cfg()
    cfg.merge_from_list(list(TINY) + list(TINY_TOKENIZER) + list(modality_opts) + list(extra))
    return cfg


def _perturb(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)


def pretrain_checkpoint(cfg, path, seed=0, tokenizer=False):
    """A full BRIDLE checkpoint (fvcore layout) with a distinctive encoder and, with
    ``tokenizer``, a trained-tokenizer whose codebooks are initialised on random inputs."""
    torch.manual_seed(seed)
    enc = build_encoder(cfg).eval()
    _perturb(enc, seed)
    model = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    tok = None
    if tokenizer:
        cfg = cfg.clone()
        cfg.MODEL.TOKENIZER.COLD_START = False
        tok = build_tokenizer(cfg, 64)
        _perturb(tok, seed + 1)
        q = tok.quantizer
        x = torch.randn(4, *([3] if cfg.MODEL.PATCH_EMBED.IN_CHANS == 3 else []), *cfg.MODEL.PATCH_EMBED.INPUT_SIZE)
        with torch.no_grad():
            z = tok.features(x).reshape(-1, int(cfg.MODEL.QUANTIZER.CODE_DIM))
            if hasattr(q, "init_codebook") and not q.is_initialized():
                q.init_codebook(z)
        tok.eval()
        model.update({f"tokenizer.{k}": v for k, v in tok.state_dict().items()})
    torch.save({"model": model, "cfg": cfg.dump(), "iteration": 7}, path)
    return enc, tok


def classifier_checkpoint(cfg, path, num_classes=3, seed=0):
    cfg = cfg.clone()
    cfg.MODEL.HEAD.NUM_CLASSES = num_classes
    torch.manual_seed(seed)
    model = EncoderClassifier(cfg).eval()
    _perturb(model, seed)
    torch.save({"model": model.state_dict(), "cfg": cfg.dump(), "iteration": 3}, path)
    return model
