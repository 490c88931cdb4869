"""bridle.load_tokenizer: codes [T, L] / [B, T, L] for raw input of any length or size,
deterministic; windows of a long input tokenized as the model was trained; a folder and the
checkpoint give the same codes."""

import math

import pytest
import torch

import bridle
from bridle.interop.hub import export_folder
from export_helpers import AUDIO, IMAGE, pretrain_checkpoint, tiny_cfg


@pytest.fixture(scope="module")
def audio_tok(tmp_path_factory):
    pytest.importorskip("bridle_audio")
    d = tmp_path_factory.mktemp("audio_tok")
    cfg = tiny_cfg(AUDIO)
    pretrain_checkpoint(cfg, d / "model_final.pth", tokenizer=True)
    export_folder(d / "model_final.pth", d / "tokenizer", kind="tokenizer")
    return bridle.load_tokenizer(str(d / "model_final.pth")), d


def _frames(samples, sr=16000):
    return 1 + (samples - sr * 25 // 1000) // (sr * 10 // 1000)


@pytest.mark.parametrize("seconds", [0.3, 0.64, 1.0, 2.05, 3.2])
def test_audio_codes_of_any_length(audio_tok, seconds):
    tok, _ = audio_tok
    g = torch.Generator().manual_seed(int(seconds * 100))
    wav = torch.randn(int(seconds * 16000), generator=g)
    codes = tok(wav)
    # 16-frame patches along time (window 64 frames), 2 along the 32 mel bins
    assert codes.shape == (math.ceil(_frames(wav.numel()) / 16) * 2, 2) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    assert torch.equal(codes, tok(wav))  # deterministic
    tok.train()  # stays in eval mode
    assert not tok.training and torch.equal(codes, tok.encode(wav))


def test_audio_windows_are_tokenized_as_in_training(audio_tok):
    """A clip of one window gives the codes of the dataset's eval input (fbank zero-padded in
    the log-mel domain, then normalised); a long clip the codes of each window in turn."""
    from bridle_audio.features import FbankParams, compute_fbank, fit_length, normalize

    tok, _ = audio_tok
    a = tok.cfg.INPUT.AUDIO
    wav = torch.randn(25000, generator=torch.Generator().manual_seed(3))  # 155 frames: 3 windows, the last padded
    fb = compute_fbank(wav, FbankParams.from_config(tok.cfg))
    codes = tok(wav)
    for w in range(3):
        x = normalize(fit_length(fb[w * 64 : (w + 1) * 64], 64), float(a.NORM_MEAN), float(a.NORM_STD))
        with torch.no_grad():
            ref = tok.tokenizer(x[None]).codes[0]
        kept = ref[: (math.ceil((fb.shape[0] - w * 64) / 16) * 2)] if w == 2 else ref
        assert torch.equal(codes[w * 8 : w * 8 + kept.shape[0]], kept), w
    assert codes.shape[0] == 16 + math.ceil((fb.shape[0] - 128) / 16) * 2


def test_audio_batch_list_and_folder(audio_tok):
    tok, d = audio_tok
    waves = torch.randn(3, 20000, generator=torch.Generator().manual_seed(4))
    batch = tok(waves)
    assert batch.shape == (3, math.ceil(_frames(20000) / 16) * 2, 2)
    for i in range(3):
        assert torch.equal(batch[i], tok(waves[i]))
    items = tok([waves[0, :5000], waves[1]])  # a list: items of different lengths
    assert [c.shape[0] for c in items] == [math.ceil(_frames(5000) / 16) * 2, batch.shape[1]]
    folder = bridle.load_tokenizer(str(d / "tokenizer"))
    assert torch.equal(folder(waves), batch)


def test_image_codes_of_any_size(tmp_path):
    pytest.importorskip("bridle_image")
    cfg = tiny_cfg(IMAGE)
    pretrain_checkpoint(cfg, tmp_path / "p.pth", tokenizer=True)
    tok = bridle.load_tokenizer(str(tmp_path / "p.pth"))
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 32, 32, generator=g)
    native = tok(img)
    assert native.shape == (16, 2)
    mean, std = torch.tensor(cfg.INPUT.IMAGE.MEAN)[:, None, None], torch.tensor(cfg.INPUT.IMAGE.STD)[:, None, None]
    with torch.no_grad():
        assert torch.equal(native, tok.tokenizer(((img - mean) / std)[None]).codes[0])
    for h, w in ((48, 64), (30, 33), (8, 8)):
        x = torch.rand(2, 3, h, w, generator=g)
        codes = tok(x)
        assert codes.shape == (2, math.ceil(h / 8) * math.ceil(w / 8), 2)
        assert torch.equal(codes, tok(x)) and torch.equal(codes[1], tok(x[1]))
    u8 = (img * 255).round().to(torch.uint8)
    assert torch.equal(tok(u8), tok(u8.float() / 255))


def test_wrong_input_rank_is_a_clear_error(audio_tok):
    tok, _ = audio_tok
    with pytest.raises(ValueError, match="mono waveform"):
        tok(torch.randn(1, 2, 3, 4))


def test_video_codes_of_any_length(tmp_path):
    pytest.importorskip("bridle_video")
    cfg = tiny_cfg(
        [],
        "MODEL.PATCH_EMBED.NAME",
        "tubelet",
        "MODEL.PATCH_EMBED.INPUT_SIZE",
        [4, 16, 16],
        "MODEL.PATCH_EMBED.PATCH_SIZE",
        [2, 8, 8],
        "MODEL.PATCH_EMBED.IN_CHANS",
        3,
        "INPUT.VIDEO.SAMPLING_RATE",
        2,
        "INPUT.VIDEO.TEST_SHORT_SIDE_SIZE",
        16,
    )
    pretrain_checkpoint(cfg, tmp_path / "v.pth", tokenizer=True)
    tok = bridle.load_tokenizer(str(tmp_path / "v.pth"))
    g = torch.Generator().manual_seed(0)
    for frames in (8, 13, 30):  # source frames; every 2nd is kept, windows of 4 kept frames
        clip = torch.randint(0, 256, (frames, 20, 24, 3), generator=g, dtype=torch.uint8)
        codes = tok(clip)
        kept = math.ceil(frames / 2)
        assert codes.shape == (math.ceil(kept / 2) * 2 * 2, 2)
        assert torch.equal(codes, tok(clip))


def test_folders_of_the_wrong_kind_are_refused(audio_tok):
    from bridle.errors import UserError

    _, d = audio_tok
    with pytest.raises(UserError, match="load_tokenizer"):
        bridle.load_encoder(str(d / "tokenizer"))
    export_folder(d / "model_final.pth", d / "encoder")
    with pytest.raises(ValueError, match="holds no tokenizer"):
        bridle.load_tokenizer(str(d / "encoder"))
