"""Config keys of the audio plugin: ``INPUT.AUDIO.*`` (features, augmentation, masking) and
``DATASETS.AUDIO.*`` (where the data lives). Each key is declared once, with a comment."""

from bridle.config import CfgNode as CN


def add_config(cfg) -> None:
    """Declare the audio keys on ``cfg`` (called by :func:`bridle.config.get_cfg`)."""
    if "AUDIO" in cfg.INPUT or "AUDIO" in cfg.DATASETS:
        return  # already added (get_cfg on a clone of a config that has them)

    a = CN()
    # ------------------------------------------------------------------ features
    # Sample rate every clip is resampled to before the filterbank (Hz).
    a.SAMPLE_RATE = 16000
    # Mel bins of the kaldi fbank (the model input's last dim).
    a.NUM_MEL_BINS = 128
    # Analysis window of the fbank, in milliseconds (hanning window).
    a.FRAME_LENGTH_MS = 25.0
    # Hop between fbank frames, in milliseconds.
    a.FRAME_SHIFT_MS = 10.0
    # Frames per item: shorter clips are zero-padded in the log-mel domain, longer ones cropped.
    a.TARGET_LENGTH = 1024
    # In training modes crop long clips at a random frame offset (eval always crops from frame 0).
    a.TRAIN_RANDOM_CROP = True
    # Normalisation (x - NORM_MEAN) / (2 * NORM_STD); defaults are AudioSet's (ESC-50: -6.6268077).
    a.NORM_MEAN = -4.4446096
    # Std used by the normalisation above (ESC-50: 5.358466); tools/compute_audio_stats.py finds both.
    a.NORM_STD = 3.3216383
    # ------------------------------------------------------------------ augmentation
    # Roll the waveform circularly by a random offset (pretrain / finetune / linear_probe training).
    a.ROLL = True
    # Multiply the waveform by a random gain Beta(GAIN_BETA, GAIN_BETA) + 0.5 (same modes as ROLL).
    a.GAIN = True
    # Concentration of the Beta distribution of the random gain.
    a.GAIN_BETA = 10.0
    # SpecAugment: max width of one frequency mask in mel bins (finetune only; 0 = off).
    a.FREQ_MASK = 48
    # SpecAugment: max width of one time mask in frames (finetune only; 0 = off).
    a.TIME_MASK = 192
    # Probability of waveform mixup with another random clip of the dataset (finetune only).
    a.MIXUP_PROB = 0.5
    # Mixup weight lambda ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA); labels are mixed with the same lambda.
    a.MIXUP_ALPHA = 10.0
    # ------------------------------------------------------------------ 2-D masking ("time_freq")
    # Fraction of time rows of the patch grid masked whole by the "time_freq" mask generator.
    a.MASK_TIME_RATIO = 0.6
    # Fraction of frequency columns masked whole; the rest up to MODEL.MASK.RATIO is random.
    a.MASK_FREQ_RATIO = 0.5
    cfg.INPUT.AUDIO = a

    d = CN()
    # AudioMAE JSON manifest of the "train" split ({"data": [{"wav", "labels"}]} or a bare list).
    d.TRAIN_MANIFEST = ""
    # Manifest of the "val" split ("" = none).
    d.VAL_MANIFEST = ""
    # Manifest of the "test" split.
    d.TEST_MANIFEST = ""
    # Class-label CSV "index,mid,display_name" mapping the manifests' label ids to class indices.
    d.LABEL_CSV = ""
    # Per-clip sampling weights of the train manifest (AST "*_weight.csv"); "" = from label counts.
    d.TRAIN_WEIGHTS = ""
    # Directory that relative "wav" paths of a manifest are resolved against ("" = its own dir).
    d.ROOT = ""
    # ESC-50 root (holds meta/esc50.csv and audio/), for the "esc50" dataset.
    d.ESC50_ROOT = ""
    # ESC-50 fold (1-5) held out as the val/test split; "train" is the other four folds.
    d.ESC50_FOLD = 1
    # Folder scanned recursively for clips by the unlabeled "audio_folder" dataset.
    d.FOLDER_ROOT = ""
    # File extensions (lower case) that "audio_folder" picks up.
    d.FOLDER_EXTENSIONS = [".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"]
    # Directory of cached un-normalised fbanks (.npy per clip) used when no waveform augmentation
    # applies to an item; "" = no cache.
    d.FBANK_CACHE_DIR = ""
    # Loader workers only decode + resample (+ roll, gain, mixup, crop in the waveform domain) and
    # the fbank, log-mel zero padding, SpecAugment and normalisation run batched on the training
    # device (the datasets' device_transform, applied in every mode; equal to the CPU path within
    # 1e-3). FBANK_CACHE_DIR is not used then.
    d.FBANK_ON_DEVICE = False
    cfg.DATASETS.AUDIO = d
