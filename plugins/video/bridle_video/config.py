"""Config keys of the video plugin: ``INPUT.VIDEO.*`` (clip sampling, augmentation, multi-view
test) and ``DATASETS.VIDEO.*`` (where the data lives). Each key is declared once, with a comment.

Frames per clip and crop size are not keys of their own: a clip is ``MODEL.PATCH_EMBED.INPUT_SIZE``
= [T, H, W] (T frames taken every SAMPLING_RATE frames, H x W crops).
"""

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from bridle.config import CfgNode as CN


def add_config(cfg) -> None:
    """Declare the video keys on ``cfg`` (called by :func:`bridle.config.get_cfg`)."""
    if "VIDEO" in cfg.INPUT or "VIDEO" in cfg.DATASETS:
        return  # already added (get_cfg on a clone of a config that has them)

    v = CN()
    # ------------------------------------------------------------------ sampling
    # Take every SAMPLING_RATE-th frame; a clip spans T * SAMPLING_RATE source frames.
    v.SAMPLING_RATE = 4
    # Decoder threads per VideoReader (per loader worker).
    v.DECODE_THREADS = 1
    # Per-channel mean subtracted from RGB values in [0, 1] (ImageNet's).
    v.MEAN = list(IMAGENET_DEFAULT_MEAN)
    # Per-channel std the RGB values are divided by (ImageNet's).
    v.STD = list(IMAGENET_DEFAULT_STD)
    # ------------------------------------------------------------------ augmentation
    # Probability of a horizontal flip of the whole clip in the training modes.
    v.HFLIP_PROB = 0.5
    # "pretrain" multi-scale crop (VideoMAE GroupMultiScaleCrop): crop sides as fractions of the short side.
    v.PRETRAIN_SCALES = [1.0, 0.875, 0.75, 0.66]
    # Largest index distance between the height and width scales of one multi-scale crop.
    v.PRETRAIN_MAX_DISTORT = 1
    # Area range of the clip-wide RandomResizedCrop in "finetune" / "linear_probe" modes.
    v.FINETUNE_SCALE = [0.08, 1.0]
    # Aspect-ratio range of that RandomResizedCrop.
    v.FINETUNE_RATIO = [0.75, 1.3333]
    # "finetune" RandAugment (pytorchvideo, one draw per clip): magnitude (VideoMAE: m7).
    v.RAND_AUG_MAGNITUDE = 7
    # RandAugment ops applied per clip (VideoMAE: n4; 0 = no RandAugment).
    v.RAND_AUG_NUM_LAYERS = 4
    # Probability of applying each drawn RandAugment op.
    v.RAND_AUG_PROB = 0.5
    # Std of the Gaussian jitter of the RandAugment magnitude (VideoMAE: mstd0.5).
    v.RAND_AUG_MSTD = 0.5
    # "finetune": probability of erasing one box (same box in every frame, pixel noise; 0 = off).
    v.RE_PROB = 0.25
    # "finetune": each video yields this many independently augmented items per epoch
    # (repeated augmentation, VideoMAE num_sample; 1 = off).
    v.REPEATED_AUG = 1
    # Repeated sampling (VideoMAE V2 num_sample) in training modes: each video is decoded once
    # and this many independently augmented clips of the decoded frames come out as consecutive
    # batch items (a loader batch holds BATCH_SIZE_PER_GPU x NUM_SAMPLE clips; 1 = off). Cuts
    # decoding per clip by this factor; unlike REPEATED_AUG it does not lengthen the epoch.
    v.NUM_SAMPLE = 1
    # ------------------------------------------------------------------ masking
    # MODEL.MASK.NAME "tube_random": fraction of the spatial positions hidden at every time step
    # (tubes); random tokens elsewhere make up the rest of MODEL.MASK.RATIO.
    v.MASK_TUBE_RATIO = 0.5
    # ------------------------------------------------------------------ evaluation
    # "eval": frames are resized so their short side is this, then cropped to [H, W].
    v.TEST_SHORT_SIDE_SIZE = 224
    # Split "test" in "eval" mode: temporal clips per video, evenly spaced (split "val": 1).
    v.TEST_NUM_SEGMENTS = 5
    # Split "test" in "eval" mode: spatial crops per clip, evenly spaced along the long side (split "val": 1).
    v.TEST_NUM_CROPS = 3
    cfg.INPUT.VIDEO = v

    d = CN()
    # Kinetics-style CSV of the "train" split: one "path label" line per video (integer label).
    d.TRAIN_CSV = ""
    # CSV of the "val" split.
    d.VAL_CSV = ""
    # CSV of the "test" split.
    d.TEST_CSV = ""
    # Directory that relative CSV paths are resolved against ("" = the CSV's own directory).
    d.ROOT = ""
    # Folder scanned recursively for clips by the unlabeled "video_folder" dataset (every split).
    d.FOLDER_ROOT = ""
    # File extensions (lower case) that "video_folder" picks up.
    d.FOLDER_EXTENSIONS = [".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"]
    cfg.DATASETS.VIDEO = d
