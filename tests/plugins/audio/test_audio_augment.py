"""Augmentations follow the dataset mode: SpecAugment and mixup only in "finetune",
roll + gain in the training modes, nothing in "eval"."""

import pytest
import torch
from torch.utils.data import DataLoader

from bridle.data import skip_none_collate
from bridle_audio.augment import SpecAugment, mix_waveforms, roll_and_gain
from bridle_audio.dataset import AudioClipDataset

MODES = ("pretrain", "finetune", "linear_probe", "eval")
PAD_VALUE = (0.0 - -4.4446096) / (2 * 3.3216383)  # a masked/padded bin after normalisation


def _clips(corpus):
    return corpus.speech[:4]


def _batches(cfg, paths, labels, num_classes, multi_label=True, seed=0):
    """One batch of every mode, through a DataLoader and the core collate."""
    out = {}
    for mode in MODES:
        ds = AudioClipDataset(cfg, paths, mode, labels=labels, num_classes=num_classes, multi_label=multi_label)
        torch.manual_seed(seed)
        out[mode] = next(iter(DataLoader(ds, batch_size=len(paths), collate_fn=skip_none_collate)))
    return out


def test_spec_augment_changes_the_batch_only_in_finetune(audio_corpus, cfg_factory):
    cfg = cfg_factory(ROLL=False, GAIN=False, MIXUP_PROB=0.0, FREQ_MASK=48, TIME_MASK=192)
    paths = _clips(audio_corpus)
    labels = [[0], [1], [0, 1], [1]]
    b = _batches(cfg, paths, labels, 2)
    for mode in ("pretrain", "linear_probe"):
        assert torch.equal(b[mode]["input"], b["eval"]["input"]), mode
    ft, ev = b["finetune"]["input"], b["eval"]["input"]
    assert ft.shape == ev.shape == (4, 1024, 128)
    assert not torch.equal(ft, ev)
    changed = ft != ev
    assert torch.all(ft[changed] == PAD_VALUE)  # masks set log-mel 0, like padding
    assert changed.flatten(1).any(1).sum() >= 2  # most items got a visible mask
    assert torch.equal(b["finetune"]["label"], b["eval"]["label"])  # no mixup here
    # Off when the sizes are 0.
    cfg = cfg_factory(ROLL=False, GAIN=False, MIXUP_PROB=0.0, FREQ_MASK=0, TIME_MASK=0)
    b = _batches(cfg, paths, labels, 2)
    assert torch.equal(b["finetune"]["input"], b["eval"]["input"])


def test_mixup_changes_items_and_labels_only_in_finetune(audio_corpus, cfg_factory):
    cfg = cfg_factory(ROLL=False, GAIN=False, MIXUP_PROB=1.0, FREQ_MASK=0, TIME_MASK=0)
    paths = _clips(audio_corpus)
    labels = [[0], [1], [2], [3]]
    b = _batches(cfg, paths, labels, 4)
    for mode in ("pretrain", "linear_probe"):
        assert torch.equal(b[mode]["input"], b["eval"]["input"]), mode
        assert torch.equal(b[mode]["label"], b["eval"]["label"]), mode
    ft = b["finetune"]
    assert not torch.equal(ft["input"], b["eval"]["input"])
    y = ft["label"]
    assert torch.allclose(y.sum(1), torch.ones(4))
    for i in range(4):  # each row mixes its own class with exactly one other, lambda ~ Beta(10, 10)
        assert 0.2 < float(y[i, i]) < 1.0
        others = [c for c in range(4) if c != i and y[i, c] > 0]
        assert len(others) == 1 and torch.isclose(y[i, i] + y[i, others[0]], torch.tensor(1.0))


def test_mixup_of_single_label_data_gives_soft_targets(audio_corpus, cfg_factory):
    paths = _clips(audio_corpus)
    cfg = cfg_factory(ROLL=False, GAIN=False, MIXUP_PROB=0.5, TARGET_LENGTH=256)
    ft = AudioClipDataset(cfg, paths, "finetune", labels=[0, 1, 2, 3], num_classes=50)
    ev = AudioClipDataset(cfg, paths, "eval", labels=[0, 1, 2, 3], num_classes=50)
    torch.manual_seed(1)
    labels = torch.stack([ft[i % 4]["label"] for i in range(16)])
    assert labels.shape == (16, 50) and labels.dtype == torch.float32
    assert torch.allclose(labels.sum(1), torch.ones(16))
    mixed = (labels.max(1).values < 1).sum()
    assert 0 < mixed < 16  # p = 0.5: some mixed, some not
    assert ev[2]["label"].dtype == torch.long and int(ev[2]["label"]) == 2
    # Without mixup a single-label target stays a class index in every mode.
    cfg.INPUT.AUDIO.MIXUP_PROB = 0.0
    assert AudioClipDataset(cfg, paths, "finetune", labels=[0, 1, 2, 3], num_classes=50)[3]["label"].dtype == torch.long


def test_roll_and_gain_in_training_modes_only(audio_corpus, cfg_factory):
    cfg = cfg_factory(ROLL=True, GAIN=True, MIXUP_PROB=0.0, FREQ_MASK=0, TIME_MASK=0)
    paths = _clips(audio_corpus)
    b = _batches(cfg, paths, [[0]] * 4, 1)
    for mode in ("pretrain", "finetune", "linear_probe"):
        assert not torch.equal(b[mode]["input"], b["eval"]["input"]), mode
    # Eval is deterministic whatever the seed.
    assert torch.equal(_batches(cfg, paths, [[0]] * 4, 1, seed=5)["eval"]["input"], b["eval"]["input"])


def test_augmentation_primitives():
    torch.manual_seed(0)
    wav = torch.randn(1, 16000)
    rolled = roll_and_gain(wav, roll=True, gain=False, gain_beta=10.0)
    assert sorted(rolled[0].tolist()) == sorted(wav[0].tolist())  # a permutation
    gains = [float(roll_and_gain(wav, False, True, 10.0).std() / wav.std()) for _ in range(200)]
    assert 0.5 < min(gains) and max(gains) < 1.5 and abs(sum(gains) / 200 - 1.0) < 0.03
    short = torch.ones(1, 8000)
    mixed = mix_waveforms(wav, short, 0.7)
    assert mixed.shape == wav.shape and abs(float(mixed.mean())) < 1e-6
    assert torch.allclose(mix_waveforms(wav, wav, 0.3), wav - wav.mean(), atol=1e-6)
    spec = SpecAugment(48, 192)
    fb = torch.randn(100, 40) + 10  # smaller than the mask sizes: clamped, still valid
    out = spec(fb)
    assert out.shape == fb.shape and (out == 0).any()
    with pytest.raises(ValueError, match="FREQ_MASK"):
        SpecAugment(-1, 0)
