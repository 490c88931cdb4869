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
        ref = kaldi.fbank(
            w - w.mean(),
            sample_frequency=16000,
            num_mel_bins=128,
            frame_length=25.0,
            frame_shift=10.0,
            window_type="hanning",
            htk_compat=True,
            use_energy=False,
            dither=0.0,
        )
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


def _datasets(cfg_factory, paths, mode, **audio):
    from bridle_audio import AudioClipDataset

    cpu_cfg = cfg_factory(**audio)
    dev_cfg = cfg_factory(**audio)
    dev_cfg.DATASETS.AUDIO.FBANK_ON_DEVICE = True
    return AudioClipDataset(cpu_cfg, paths, mode), AudioClipDataset(dev_cfg, paths, mode)


@pytest.mark.parametrize("mode", ["eval", "pretrain"])
def test_fbank_on_device_dataset_equals_cpu_dataset(audio_corpus, cfg_factory, mode):
    """Same clips, same seeds: the collated waveform batch through the dataset's device_transform
    equals the CPU items (long clips cropped — at the same random frame offset in training —
    short ones padded in the log-mel domain)."""
    from bridle.data.build import apply_device_transform, skip_none_collate

    paths = audio_corpus.speech[:3] + [audio_corpus.tones["sweep_long_22k"]]
    cpu, dev = _datasets(cfg_factory, paths, mode, TARGET_LENGTH=300, ROLL=False, GAIN=False)
    assert cpu.device_transform is None and dev.device_transform is not None
    want, items = [], []
    for i in range(len(paths)):
        torch.manual_seed(i)
        want.append(cpu[i]["input"])
        torch.manual_seed(i)
        items.append(dev[i])
    assert items[0]["input"].dim() == 1  # workers return waveforms
    got = apply_device_transform(dev, skip_none_collate(items))
    assert got["input"].shape == (len(paths), 300, 128) and "num_samples" not in got
    for i in range(len(paths)):
        err = (got["input"][i] - want[i]).abs().max().item()
        assert err < 1e-3, f"{paths[i]}: {err}"


@pytest.mark.slow
def test_fbank_on_device_through_every_mode(clean_corpus, tmp_path):
    """DATASETS.AUDIO.FBANK_ON_DEVICE through tools/train_net.py: a BRIDLE schedule (codebook
    init batch, encoder and tokenizer phases) and a fine-tune with evaluation."""
    import json
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    def run(args):
        env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1")
        r = subprocess.run([sys.executable] + args, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{args[0]} failed:\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"
        return r.stdout + r.stderr

    data = str(tmp_path / "data")
    run(
        [
            os.path.join(repo, "tools", "prepare_audio.py"),
            "folder",
            "--input",
            clean_corpus,
            "--output",
            data,
            "--labels-from-subdirs",
            "--eval-fraction",
            "0.3",
            "--workers",
            "1",
        ]
    )
    tiny = os.path.join(repo, "configs", "audio", "tiny_pretrain.yaml")
    common = [
        "DATASETS.AUDIO.FBANK_ON_DEVICE",
        "True",
        "DATASETS.AUDIO.TRAIN_MANIFEST",
        os.path.join(data, "train.json"),
        "DATASETS.AUDIO.LABEL_CSV",
        os.path.join(data, "class_labels_indices.csv"),
        "SOLVER.BATCH_SIZE_PER_GPU",
        "4",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
    ]
    pre = str(tmp_path / "pretrain")
    assert "Schedule finished" in run(
        [os.path.join(repo, "tools", "train_net.py"), "--config-file", tiny, "OUTPUT_DIR", pre] + common
    )
    with open(os.path.join(data, "class_labels_indices.csv")) as f:
        num_classes = sum(1 for _ in f) - 1
    ft = str(tmp_path / "finetune")
    run(
        [
            os.path.join(repo, "tools", "train_net.py"),
            "--config-file",
            tiny,
            "TRAINER.NAME",
            "finetune",
            "OUTPUT_DIR",
            ft,
            "MODEL.WEIGHTS",
            os.path.join(pre, "2_encoder", "model_final.pth"),
            "DATASETS.TRAIN",
            "audioset_manifest",
            "DATASETS.TEST",
            "audioset_manifest",
            "DATASETS.AUDIO.TEST_MANIFEST",
            os.path.join(data, "eval.json"),
            "MODEL.HEAD.NUM_CLASSES",
            str(num_classes),
            "MODEL.HEAD.LOSS",
            "bce",
            "TEST.EVALUATORS",
            "['map']",
            "INPUT.AUDIO.FREQ_MASK",
            "4",
            "INPUT.AUDIO.TIME_MASK",
            "8",
        ]
        + common
    )
    with open(os.path.join(ft, "final_results.json")) as f:
        assert 0.0 <= json.load(f)["last"]["test"]["mAP"] <= 1.0
