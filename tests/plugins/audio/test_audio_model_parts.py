"""Patch embedding, time/frequency masking, registry entries and the audio configs."""

import glob
import os

import pytest
import torch

import bridle_audio
from bridle.config import get_cfg
from bridle.modeling import ConvPatchEmbed, build_mask_generator, build_patch_embed
from bridle.registry import DATASET, MASK_GENERATOR, PATCH_EMBED, SAMPLER
from bridle_audio.masking import TimeFreqMaskGenerator


def test_everything_is_registered_on_import():
    assert PATCH_EMBED.origin("spectrogram") == "bridle_audio"
    assert MASK_GENERATOR.origin("time_freq") == "bridle_audio"
    for name in ("audioset_manifest", "esc50", "audio_folder"):
        assert DATASET.origin(name) == "bridle_audio"
    assert "WeightedSampler" in SAMPLER.names() and callable(bridle_audio.add_config)


def test_add_config_declares_keys_once(cfg_factory):
    cfg = cfg_factory()
    a, d = cfg.INPUT.AUDIO, cfg.DATASETS.AUDIO
    assert (a.SAMPLE_RATE, a.NUM_MEL_BINS, a.TARGET_LENGTH) == (16000, 128, 1024)
    assert (a.NORM_MEAN, a.NORM_STD) == (-4.4446096, 3.3216383)
    assert (a.FREQ_MASK, a.TIME_MASK, a.MIXUP_ALPHA, a.GAIN_BETA) == (48, 192, 10.0, 10.0)
    assert {
        "TRAIN_MANIFEST",
        "VAL_MANIFEST",
        "TEST_MANIFEST",
        "LABEL_CSV",
        "ESC50_ROOT",
        "ESC50_FOLD",
        "FOLDER_ROOT",
        "FBANK_CACHE_DIR",
        "TRAIN_WEIGHTS",
    } <= set(d)
    bridle_audio.add_config(cfg)  # idempotent
    assert cfg.INPUT.AUDIO.TARGET_LENGTH == 1024
    # Every key carries a one-line comment in config.py.
    src = open(os.path.join(os.path.dirname(bridle_audio.__file__), "config.py")).read().splitlines()
    for i, line in enumerate(src):
        stripped = line.strip()
        if stripped.startswith(("a.", "d.")) and "=" in stripped and not stripped.startswith(("a =", "d =")):
            assert src[i - 1].strip().startswith("#"), f"config.py line {i + 1} has no comment: {stripped}"


def test_spectrogram_patch_embed_grid_64x8(cfg_factory):
    cfg = cfg_factory()
    cfg.MODEL.PATCH_EMBED.NAME = "spectrogram"
    cfg.MODEL.PATCH_EMBED.IN_CHANS = 1
    cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [1024, 128]
    cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [16, 16]
    embed = build_patch_embed(cfg, 64)
    assert isinstance(embed, ConvPatchEmbed)  # the core module, reused
    assert embed.grid_size == (64, 8) and embed.num_patches == 512
    x = torch.randn(2, 1024, 128)
    tokens = embed(x)
    assert tokens.shape == (2, 512, 64)
    # Row-major (time, freq) order: token t * 8 + f sees frames 16t.. and bins 16f..
    patch = x[1, 16 * 5 : 16 * 6, 16 * 3 : 16 * 4]
    expected = embed.proj.weight.flatten(1) @ patch.flatten() + embed.proj.bias
    assert torch.allclose(tokens[1, 5 * 8 + 3], expected, atol=1e-4)
    # Same state-dict keys as the core "conv" entry: checkpoints interchange.
    cfg.MODEL.PATCH_EMBED.NAME = "conv"
    assert build_patch_embed(cfg, 64).state_dict().keys() == embed.state_dict().keys()


def test_spectrogram_patch_embed_config_errors(cfg_factory):
    cfg = cfg_factory(TARGET_LENGTH=512)
    cfg.MODEL.PATCH_EMBED.NAME, cfg.MODEL.PATCH_EMBED.IN_CHANS = "spectrogram", 1
    cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [1024, 128]
    with pytest.raises(ValueError, match="INPUT.AUDIO.TARGET_LENGTH"):
        build_patch_embed(cfg, 32)
    cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [512, 128]
    assert build_patch_embed(cfg, 32).grid_size == (32, 8)
    cfg.MODEL.PATCH_EMBED.IN_CHANS = 3
    with pytest.raises(ValueError, match="IN_CHANS"):
        build_patch_embed(cfg, 32)


def test_time_freq_mask_exact_count_and_structure(cfg_factory):
    cfg = cfg_factory(MASK_TIME_RATIO=0.6, MASK_FREQ_RATIO=0.5)
    cfg.MODEL.MASK.NAME, cfg.MODEL.MASK.RATIO = "time_freq", 0.8
    gen = build_mask_generator(cfg, (64, 8))
    assert gen.num_masked == 410 and (gen.num_time, gen.num_freq) == (38, 4)
    g = torch.Generator().manual_seed(0)
    mask = gen(16, device=torch.device("cpu"), generator=g)
    assert mask.dtype == torch.bool and mask.shape == (16, 512)
    assert torch.all(mask.sum(1) == gen.num_masked)
    grid = mask.view(16, 64, 8)
    full_rows = grid.all(2).sum(1)
    full_cols = grid.all(1).sum(1)
    assert torch.all(full_rows >= 38) and torch.all(full_cols >= 4)
    assert len({tuple(m.tolist()) for m in mask}) == 16  # different per sample
    # Deterministic with a generator.
    again = gen(16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_time_freq_mask_other_grids_and_errors():
    for grid, ratio, t, f in (((32, 8), 0.8, 0.6, 0.5), ((10, 6), 0.5, 0.3, 0.2), ((5, 5), 0.0, 0.0, 0.0)):
        gen = TimeFreqMaskGenerator(grid, ratio, t, f)
        m = gen(7)
        assert gen.num_masked == round(grid[0] * grid[1] * ratio)
        assert torch.all(m.sum(1) == gen.num_masked)
    with pytest.raises(ValueError, match="MASK_TIME_RATIO"):
        TimeFreqMaskGenerator((64, 8), 0.5, 0.6, 0.5)  # 408 structured > 256 allowed
    with pytest.raises(ValueError, match="2-D"):
        TimeFreqMaskGenerator((8, 14, 14), 0.9, 0.5, 0.5)
    with pytest.raises(ValueError, match="MASK_FREQ_RATIO"):
        TimeFreqMaskGenerator((64, 8), 0.8, 0.5, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_time_freq_mask_on_device_without_host_sync():
    gen = TimeFreqMaskGenerator((64, 8), 0.8, 0.6, 0.5)
    torch.cuda.set_sync_debug_mode("error")
    try:
        m = gen(32, device=torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert m.is_cuda and torch.all(m.sum(1) == 410)


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "audio", "*.yaml")))
)
def test_audio_configs_load_and_build_the_patch_embed(path):
    cfg = get_cfg(load_plugins=False)
    bridle_audio.add_config(cfg)
    cfg.merge_from_file(path)
    name = os.path.basename(path)
    assert cfg.MODEL.PATCH_EMBED.NAME == "spectrogram"
    embed = build_patch_embed(cfg, 16)
    patch = cfg.MODEL.PATCH_EMBED.PATCH_SIZE
    assert embed.grid_size == (cfg.INPUT.AUDIO.TARGET_LENGTH // patch[0], cfg.INPUT.AUDIO.NUM_MEL_BINS // patch[1])
    if name.startswith(("finetune", "linprobe")):
        assert cfg.TRAINER.NAME == ("linear_probe" if name.startswith("linprobe") else "finetune")
        esc = "esc50" in name
        assert cfg.MODEL.HEAD.NUM_CLASSES == (50 if esc else 527)
        assert cfg.MODEL.HEAD.LOSS == ("ce" if esc else "bce")
        assert list(cfg.TEST.EVALUATORS) == (["accuracy"] if esc else ["map"])
        assert cfg.DATASETS.TRAIN in DATASET.names() and cfg.DATASETS.TEST in DATASET.names()
        assert cfg.DATALOADER.SAMPLER_TRAIN in SAMPLER.names()
    if name == "finetune_as2m.yaml":
        assert cfg.DATALOADER.SAMPLER_TRAIN == "WeightedSampler" and cfg.SOLVER.LAYER_DECAY == 0.75
    if name == "finetune_esc50.yaml":
        assert cfg.INPUT.AUDIO.TARGET_LENGTH == 512 and embed.grid_size == (32, 8)
    if name == "base_audio.yaml":
        d = cfg.MODEL.DECODER
        assert (d.ATTENTION, list(d.WINDOW_SIZE), list(d.SHIFT_SIZE), d.DEPTH, d.EMBED_DIM, d.NUM_HEADS) == (
            "window",
            [4, 4],
            [2, 0],
            16,
            512,
            16,
        )


def test_core_sampler_module_names_no_modality():
    import bridle.data.weighted_sampler as ws

    text = open(ws.__file__).read().lower()
    assert "audio" not in text and "spectrogram" not in text
