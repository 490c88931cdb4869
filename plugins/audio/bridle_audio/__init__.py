"""Bridle audio plugin: kaldi-fbank inputs, the "spectrogram" patch embedder, the "time_freq"
mask generator and the "audioset_manifest" / "esc50" / "audio_folder" datasets.

Importing the package registers everything; :func:`add_config` declares the
``INPUT.AUDIO.*`` and ``DATASETS.AUDIO.*`` keys.
"""

import bridle.data  # noqa: F401  (registers the core WeightedSampler the AudioSet recipes use)

from . import adapter, datasets, masking, patch_embed, shards  # noqa: F401  (registration side effects)
from .config import add_config
from .dataset import AudioClipDataset
from .features import AudioDecodeError, FbankParams, compute_fbank, fit_length, load_waveform, normalize

__all__ = [
    "AudioClipDataset",
    "AudioDecodeError",
    "FbankParams",
    "add_config",
    "compute_fbank",
    "fit_length",
    "load_waveform",
    "normalize",
]
