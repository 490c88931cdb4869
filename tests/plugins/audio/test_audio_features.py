"""Decoding, resampling and fbank: the authors' recipe (dataset.py of github.com/HoangNguyenM/bridle),
checked against torchaudio's kaldi."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from bridle_audio.dataset import AudioClipDataset
from bridle_audio.features import (
    AudioDecodeError,
    FbankParams,
    compute_fbank,
    fit_length,
    load_waveform,
    normalize,
)

MEAN, STD = -4.4446096, 3.3216383


def reference_fbank(wav):
    """The recipe written out against torchaudio directly."""
    return kaldi.fbank(
        wav - wav.mean(),
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
        frame_length=25,
    )


def test_fbank_matches_torchaudio_kaldi(audio_corpus):
    for path in audio_corpus.speech[:3] + [audio_corpus.tones["noise_32k"]]:
        wav = load_waveform(path, 16000)
        ours = compute_fbank(wav, FbankParams())
        ref = reference_fbank(wav)
        assert ours.shape == ref.shape and ours.shape[1] == 128
        assert torch.equal(ours, ref), path
    # With a DC offset, still the recipe's "mean removed, then fbank".
    wav = load_waveform(audio_corpus.speech[0], 16000) + 0.05
    assert torch.equal(compute_fbank(wav), reference_fbank(wav))


def test_48k_stereo_becomes_16k_mono_of_the_right_length(audio_corpus):
    path = audio_corpus.tones["lr_48k_stereo"]  # left 440 Hz, right 1000 Hz, 1.5 s
    info = sf.info(path)
    assert (info.samplerate, info.channels) == (48000, 2)
    wav = load_waveform(path, 16000)
    assert wav.shape == (1, 24000) and wav.dtype == torch.float32
    raw, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = AF.resample(torch.from_numpy(raw.mean(axis=1))[None], 48000, 16000)
    assert torch.allclose(wav, expected)
    # Both channels survive the mixdown: peaks at 440 and 1000 Hz in the 16 kHz signal.
    spectrum = torch.fft.rfft(wav[0]).abs()
    freqs = torch.fft.rfftfreq(wav.shape[1], 1 / 16000)
    top = sorted(freqs[spectrum.topk(2).indices].round().tolist())
    assert top == [440.0, 1000.0]
    # 148 frames of 10 ms for 1.5 s (25 ms window, snip edges).
    assert compute_fbank(wav).shape == (FbankParams().num_frames(24000), 128) == (148, 128)


def test_other_rates_and_containers_decode(audio_corpus):
    for stem, seconds in (("c262_44k", 2.0), ("noise_32k", 3.0), ("sweep_long_22k", 12.5)):
        wav = load_waveform(audio_corpus.tones[stem], 16000)
        assert wav.shape == (1, int(seconds * 16000)), stem
    for path in audio_corpus.system + audio_corpus.speech:  # Ogg Vorbis .oga, 22.05 kHz speech
        info = sf.info(path)
        wav = load_waveform(path, 16000)
        assert wav.shape[0] == 1
        assert abs(wav.shape[1] - info.frames * 16000 / info.samplerate) <= 1, path
    if not audio_corpus.system:
        pytest.skip("no /usr/share/sounds files (sound-theme-freedesktop, alsa-utils)")


def test_clip_shorter_than_one_window_gives_one_frame(audio_corpus):
    wav = load_waveform(audio_corpus.tones["blip_8k"], 16000)  # 10 ms
    assert wav.shape == (1, 160)
    assert compute_fbank(wav).shape == (1, 128)


def test_unreadable_files_raise_naming_the_file(audio_corpus, tmp_path):
    for path in audio_corpus.corrupt + [str(tmp_path / "missing.wav")]:
        with pytest.raises(AudioDecodeError) as e:
            load_waveform(path, 16000)
        assert path in str(e.value)


def test_padding_in_log_mel_domain_before_normalisation(audio_corpus, cfg_factory):
    path = audio_corpus.tones["c262_44k"]  # 2 s -> 198 frames, padded to 1024
    cfg = cfg_factory(NORM_MEAN=MEAN, NORM_STD=STD)
    item = AudioClipDataset(cfg, [path], "eval")[0]
    x = item["input"]
    assert x.shape == (1024, 128) and x.dtype == torch.float32
    fb = reference_fbank(load_waveform(path, 16000))
    n = fb.shape[0]
    assert n == 198
    assert torch.allclose(x[:n], (fb - MEAN) / (2 * STD), atol=1e-6)
    assert torch.all(x[n:] == (0.0 - MEAN) / (2 * STD))


def test_long_clip_cropped_from_the_start_in_eval(audio_corpus, cfg_factory):
    path = audio_corpus.tones["sweep_long_22k"]  # 12.5 s -> 1248 frames
    cfg = cfg_factory()
    fb = reference_fbank(load_waveform(path, 16000))
    assert fb.shape[0] > 1024
    x = AudioClipDataset(cfg, [path], "eval")[0]["input"]
    assert torch.allclose(x, normalize(fb[:1024], MEAN, STD), atol=1e-6)
    # Training crops at a random offset (TRAIN_RANDOM_CROP), still 1024 frames.
    cfg = cfg_factory(ROLL=False, GAIN=False)
    torch.manual_seed(3)
    crops = [AudioClipDataset(cfg, [path], "pretrain")[0]["input"] for _ in range(4)]
    assert all(c.shape == (1024, 128) for c in crops)
    assert any(not torch.allclose(c, x) for c in crops)


def test_very_long_clip_is_read_only_around_the_training_window(audio_corpus, cfg_factory, monkeypatch):
    import bridle_audio.dataset as dataset_module

    path = audio_corpus.tones["hour_like_44k"]  # 40 s at 44.1 kHz
    reads = []
    real_load = dataset_module.load_waveform

    def spy(p, sr, start=0, num_frames=-1):
        reads.append(num_frames)
        return real_load(p, sr, start=start, num_frames=num_frames)

    monkeypatch.setattr(dataset_module, "load_waveform", spy)
    cfg = cfg_factory(ROLL=False, GAIN=False)
    torch.manual_seed(0)
    items = [AudioClipDataset(cfg, [path], "pretrain")[0]["input"] for _ in range(3)]
    assert all(x.shape == (1024, 128) for x in items)
    # About 10.3 s of the file per read instead of 40 s; real audio (no padding) in every frame.
    assert all(0 < n < 44100 * 11 for n in reads) and len(reads) == 3
    assert all((x != (0.0 - MEAN) / (2 * STD)).all(1).all() for x in items)
    assert not torch.equal(items[0], items[1])
    # Evaluation reads the whole file and crops from the start.
    reads.clear()
    AudioClipDataset(cfg, [path], "eval")[0]
    assert reads == [-1]


def test_fit_length_and_normalize_units():
    fb = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(fit_length(fb, 4), fb[:4])
    assert torch.equal(fit_length(fb, 4, offset=2), fb[2:6])
    assert torch.equal(fit_length(fb, 4, offset=99), fb[2:6])
    padded = fit_length(fb, 8)
    assert torch.equal(padded[:6], fb) and torch.all(padded[6:] == 0)
    assert torch.allclose(normalize(torch.tensor([1.0]), 1.0, 2.0), torch.tensor([0.0]))
    assert torch.allclose(normalize(torch.tensor([5.0]), 1.0, 2.0), torch.tensor([1.0]))


def test_eval_items_are_deterministic(audio_corpus, cfg_factory):
    cfg = cfg_factory()
    ds = AudioClipDataset(cfg, audio_corpus.speech[:2], "eval")
    a, b = ds[1], ds[1]
    assert torch.equal(a["input"], b["input"]) and int(a["index"]) == 1
    assert np.isfinite(a["input"].numpy()).all()
