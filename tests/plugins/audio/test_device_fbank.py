"""Batched (device) fbank: equal to torchaudio's Kaldi fbank clip by clip on real speech, and
the DeviceFbank batch transform equal to the dataset's CPU path (padding, crop, normalisation)."""
import pytest
import torch
from torchaudio.compliance import kaldi

from bridle_audio.device_fbank import DeviceFbank, batched_fbank, fit_frames, spec_augment_batch
from bridle_audio.features import FbankParams, compute_fbank, fit_length, load_waveform, normalize

P = FbankParams()  # 16 kHz, 128 mel bins, 25 / 10 ms


def _pad_batch(waves):
    n = max(w.shape[1] for w in waves)
    batch = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        batch[i, : w.shape[1]] = w[0]
    return batch, torch.tensor([w.shape[1] for w in waves])


def test_batched_fbank_matches_kaldi_on_real_speech(audio_corpus):
    waves = [load_waveform(p, 16000) for p in audio_corpus.speech]
    waves.append(waves[0][:, :1234] * 0.01)  # a short, quiet clip in the same batch
    batch, lengths = _pad_batch(waves)
    fb, frames = batched_fbank(batch, P, lengths)
    for i, w in enumerate(waves):
        ref = kaldi.fbank(w - w.mean(), sample_frequency=16000, num_mel_bins=128, frame_length=25.0,
                          frame_shift=10.0, window_type="hanning", htk_compat=True, use_energy=False, dither=0.0)
        assert int(frames[i]) == ref.shape[0]
        err = (fb[i, : ref.shape[0]] - ref).abs().max().item()
        assert err < 1e-3, f"clip {i}: max abs difference {err}"
        assert torch.allclose(fb[i, : ref.shape[0]], compute_fbank(w, P), atol=1e-3)


def test_batched_fbank_clip_shorter_than_one_window():
    w = torch.randn(1, 300)
    batch = torch.zeros(2, 1000)
    batch[0, :300] = w[0]
    batch[1] = torch.randn(1000)
    fb, frames = batched_fbank(batch, P, torch.tensor([300, 1000]))
    assert frames.tolist() == [1, 1 + (1000 - 400) // 160]
    assert (fb[0, 0] - compute_fbank(w, P)[0]).abs().max() < 1e-3


def test_device_transform_equals_cpu_path_eval(audio_corpus, cfg_factory):
    cfg = cfg_factory(TARGET_LENGTH=200)
    waves = [load_waveform(p, 16000) for p in audio_corpus.speech[:3]]
    # the dataset crops long clips in the waveform domain to the frames TARGET_LENGTH needs
    need = P.samples_for_frames(200)
    waves = [w[:, :need] for w in waves]
    batch, lengths = _pad_batch(waves)
    out = DeviceFbank(cfg, "eval")({"input": batch, "num_samples": lengths, "label": torch.zeros(3)})
    assert set(out) == {"input", "label"} and out["input"].shape == (3, 200, 128)
    a = cfg.INPUT.AUDIO
    for i, w in enumerate(waves):
        ref = normalize(fit_length(compute_fbank(w, P), 200), a.NORM_MEAN, a.NORM_STD)
        assert (out["input"][i] - ref).abs().max() < 1e-3


def test_fit_frames_zero_pads_in_log_mel_domain():
    fb = torch.full((2, 5, 3), -7.0)
    out = fit_frames(fb, torch.tensor([2, 5]), 6)
    assert out.shape == (2, 6, 3)
    assert (out[0, :2] == -7).all() and (out[0, 2:] == 0).all()
    assert (out[1, :5] == -7).all() and (out[1, 5:] == 0).all()


def test_spec_augment_batch_masks_one_band_each():
    torch.manual_seed(0)
    x = torch.ones(64, 100, 32)
    out = spec_augment_batch(x, 8, 20)
    for i in range(64):
        zero_f = (out[i] == 0).all(0).sum().item()  # fully masked mel bins
        zero_t = (out[i] == 0).all(1).sum().item()  # fully masked frames
        assert zero_f <= 8 and zero_t <= 20
    assert (out == 0).any()  # widths are random; some clip got masked


def test_device_transform_rejects_fbank_input(cfg_factory):
    with pytest.raises(ValueError, match="FBANK_ON_DEVICE"):
        DeviceFbank(cfg_factory(), "eval")({"input": torch.zeros(2, 10, 128)})
