"""Config keys of the image plugin: ``INPUT.IMAGE.*`` (normalisation, augmentation, mixup, block
masking) and ``DATASETS.IMAGE.*`` (where the data lives). Each key is declared once, with a comment.

The crop size is not a key of its own: every image transform produces the model input size
``MODEL.PATCH_EMBED.INPUT_SIZE`` ([H, W]).
"""

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from bridle.config import CfgNode as CN


def add_config(cfg) -> None:
    """Declare the image keys on ``cfg`` (called by :func:`bridle.config.get_cfg`)."""
    if "IMAGE" in cfg.INPUT or "IMAGE" in cfg.DATASETS:
        return  # already added (get_cfg on a clone of a config that has them)

    i = CN()
    # Per-channel mean subtracted from RGB values in [0, 1] (ImageNet's).
    i.MEAN = list(IMAGENET_DEFAULT_MEAN)
    # Per-channel std the RGB values are divided by (ImageNet's).
    i.STD = list(IMAGENET_DEFAULT_STD)
    # Resampling filter of every resize and resized crop ("bicubic", "bilinear", "nearest").
    i.INTERPOLATION = "bicubic"
    # Probability of a horizontal flip in the training modes (pretrain, finetune, linear_probe).
    i.HFLIP_PROB = 0.5
    # Area range of RandomResizedCrop in "pretrain" mode (MAE: 0.2-1).
    i.PRETRAIN_SCALE = [0.2, 1.0]
    # Area range of RandomResizedCrop in "finetune" and "linear_probe" modes.
    i.FINETUNE_SCALE = [0.08, 1.0]
    # timm auto-augment policy of "finetune" mode ("" = none); MAE: RandAugment m9, mstd 0.5.
    i.AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
    # Probability of timm random erasing in "finetune" mode (0 = off).
    i.RE_PROB = 0.25
    # Fill of the erased box: "pixel" (per-pixel normal noise), "rand" (per channel) or "const".
    i.RE_MODE = "pixel"
    # Number of erased boxes per image.
    i.RE_COUNT = 1
    # "eval" mode: resize the short side to size / EVAL_CROP_PCT, then center-crop to size.
    i.EVAL_CROP_PCT = 0.875

    m = CN()
    # Mixup Beta(ALPHA, ALPHA) of the "mixup_cutmix" batch transform (0 = no mixup).
    m.ALPHA = 0.8
    # CutMix Beta(CUTMIX_ALPHA, CUTMIX_ALPHA) (0 = no cutmix); both 0 disables the transform.
    m.CUTMIX_ALPHA = 1.0
    # Probability that a batch is mixed at all.
    m.PROB = 1.0
    # Probability of cutmix instead of mixup when both are enabled.
    m.SWITCH_PROB = 0.5
    # timm Mixup mode: "batch" (one lambda per batch), "pair" or "elem" (per sample).
    m.MODE = "batch"
    # Label smoothing folded into the mixed soft targets (keep MODEL.HEAD.LABEL_SMOOTHING at 0).
    m.LABEL_SMOOTHING = 0.1
    i.MIXUP = m

    b = CN()
    # "block" mask generator: smallest block, in patches (BEiT: 16).
    b.MIN_PATCHES = 16
    # Aspect ratios of blocks are drawn log-uniformly in [MIN_ASPECT, 1 / MIN_ASPECT] (BEiT: 0.3).
    b.MIN_ASPECT = 0.3
    i.BLOCK_MASK = b
    cfg.INPUT.IMAGE = i

    d = CN()
    # ImageFolder root of the "image_folder" dataset: ROOT/<split>/<class>/<file>.
    d.ROOT = ""
    # Directory under ROOT read for split "test" (ImageNet has no labelled test set: "val").
    d.TEST_SPLIT_DIR = "val"
    # "digits" dataset: seed of the permutation that splits the 1797 digits into train/val/test.
    d.DIGITS_SEED = 0
    # "digits": fraction of the digits in the "val" split.
    d.DIGITS_VAL_FRACTION = 0.1
    # "digits": fraction of the digits in the "test" split (the rest is "train").
    d.DIGITS_TEST_FRACTION = 0.2
    cfg.DATASETS.IMAGE = d
