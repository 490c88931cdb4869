"""Item 7: unreadable training items are skipped, named once and counted run-wide; beyond
DATALOADER.MAX_BAD_FRACTION (default 0.01) the run stops listing the first bad files; an
all-bad dataset fails fast (tokenizer phase, fine-tune, codebook-init hook) instead of
hanging; audio with non-finite / absurd amplitude or truncated files is skipped and named."""

import os
import signal

import numpy as np
import pytest
import torch

from bridle.data.build import SeededItems, skip_none_collate
from bridle.data.robust import RobustItemsMixin
from bridle.engine.train_loop import BadDataError
from rel_helpers import make_cfg


@pytest.fixture
def no_hang():
    def boom(*_):
        raise TimeoutError("the run hung on unreadable data")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _trainer(name, cfg):
    from bridle.registry import TRAINER

    t = TRAINER.get(name)(cfg)
    t.resume_or_load(resume=False)
    return t


@pytest.mark.parametrize(
    "trainer,extra",
    [
        ("tokenizer", {}),
        ("finetune", {"MODEL.HEAD.NUM_CLASSES": 4}),
    ],
)
def test_all_bad_fails_fast(trainer, extra, toy_plugin, tmp_path, no_hang):
    cfg = make_cfg(str(tmp_path / trainer), **{"TRAINER.NAME": trainer, "DATASETS.TOY.CORRUPT_EVERY": 1, **extra})
    t = _trainer(trainer, cfg)
    with pytest.raises(
        BadDataError, match=r"Every training item read so far could not be loaded .*: (index \d+ of ToySignals; ){9}"
    ):
        t.train()


def test_all_bad_codebook_init_names_the_problem(toy_plugin, tmp_path, no_hang):
    cfg = make_cfg(
        str(tmp_path / "enc"),
        **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "DATASETS.TOY.CORRUPT_EVERY": 1},
    )
    t = _trainer("encoder", cfg)
    with pytest.raises(RuntimeError, match="Cannot initialise the tokenizer's codebooks: none of .* training items"):
        t.train()


def test_bad_fraction_limit_and_run_wide_count(toy_plugin, tmp_path, caplog):
    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "DATASETS.TOY.CORRUPT_EVERY": 8,
        "SOLVER.MAX_ITER": 20,
        "LOG_PERIOD": 5,
    }
    t = _trainer("encoder", make_cfg(str(tmp_path / "a"), **extra))  # 1 in 8 bad > 0.01
    with pytest.raises(
        BadDataError,
        match=r"8 of 64 training items .*12.5% > DATALOADER.MAX_BAD_FRACTION 0.01.*: (index \d+ of ToySignals; ){7}",
    ):
        t.train()
    t = _trainer("encoder", make_cfg(str(tmp_path / "b"), **{**extra, "DATALOADER.MAX_BAD_FRACTION": 0.2}))
    caplog.clear()
    with caplog.at_level("INFO"):
        t.train()
    skips = [m for m in caplog.messages if m.startswith("Skipping unreadable training item")]
    assert len(skips) == len(set(skips)) == 8  # each bad item once, though 20 steps read 2.5 epochs
    assert t.data_bad > 8  # counted every time it is read
    console = [m for m in caplog.messages if m.startswith("eta") or "iter: 20/20" in m]
    assert any(f"skipped: {t.data_bad}" in m for m in console), console[-2:]


def test_bad_data_stop_writes_a_checkpoint_and_says_how_to_resume(toy_plugin, tmp_path):
    """The budget is exceeded while fetching the last step's batch (1 item in 8 unreadable, checked
    once 64 items were read): the state after the 7 completed steps is saved first, the message
    names it and --resume; with a looser budget the run then ends normally."""
    import re

    from bridle.checkpoint import load_checkpoint_file
    from bridle.registry import TRAINER

    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "DATASETS.TOY.CORRUPT_EVERY": 8,
        "SOLVER.MAX_ITER": 8,
        "SOLVER.CHECKPOINT_PERIOD": 0,
    }
    out = str(tmp_path / "run")
    t = _trainer("encoder", make_cfg(out, **extra))
    with pytest.raises(
        BadDataError,
        match=r"8 of 64 training items .*12.5% > DATALOADER.MAX_BAD_FRACTION 0.01.* "
        r"Wrote \S+ \(the state after 7 iterations\)\. .*--resume",
    ) as e:
        t.train()
    path = re.search(r"Wrote (\S+) \(the state after 7 iterations\)", str(e.value)).group(1)
    assert os.path.dirname(path) == out and os.path.isfile(path)
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    saved = load_checkpoint_file(path)
    assert saved.get("iteration") in (6, 7)  # the state after 7 steps (either checkpoint numbering)
    t2 = TRAINER.get("encoder")(make_cfg(out, **{**extra, "DATALOADER.MAX_BAD_FRACTION": 0.2}))
    t2.resume_or_load(resume=True)
    assert t2.start_iter == 7
    t2.train()
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


class _Files(RobustItemsMixin, torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.load_or_none(self.paths[i], lambda p: {"input": torch.from_numpy(np.load(p))}, self.paths[i])


def test_skipped_items_are_named_by_path(tmp_path):
    good = str(tmp_path / "good.npy")
    np.save(good, np.zeros(3, dtype=np.float32))
    bad = str(tmp_path / "broken.npy")
    open(bad, "wb").write(b"not numpy")
    ds = SeededItems(_Files([good, bad, str(tmp_path / "missing.npy")]), seed=0)
    batch = skip_none_collate([ds[(0, 0)], ds[(1, 1)], ds[(2, 2)]])
    assert int(batch["num_skipped"]) == 2 and batch["input"].shape == (1, 3)
    assert batch["bad_items"][0].startswith(f"{bad} (") and "missing.npy (FileNotFoundError" in batch["bad_items"][1]


def test_audio_truncated_and_absurd_amplitude_are_skipped_and_named(tmp_path):
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("bridle_audio")
    from bridle.config import get_cfg
    from bridle_audio.dataset import AudioClipDataset
    from bridle_audio.features import AudioDecodeError, load_waveform

    sr = 16000
    good, loud, trunc = (str(tmp_path / n) for n in ("good.wav", "loud.wav", "trunc.wav"))
    x = (0.1 * np.random.RandomState(0).randn(sr)).astype(np.float32)
    sf.write(good, x, sr, subtype="PCM_16")
    sf.write(loud, x * 1e30, sr, subtype="FLOAT")  # finite, absurd
    sf.write(trunc, x, sr, subtype="PCM_16")
    with open(trunc, "r+b") as f:
        f.truncate(os.path.getsize(trunc) // 2)
    assert load_waveform(good).shape == (1, sr)
    with pytest.raises(AudioDecodeError, match=r"loud.wav' has samples of absolute value [0-9.]+e\+29"):
        load_waveform(loud)
    with pytest.raises(AudioDecodeError, match=r"trunc.wav' is truncated: its header declares 32000 data bytes"):
        load_waveform(trunc)
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.AUDIO.TARGET_LENGTH", 64, "INPUT.AUDIO.NUM_MEL_BINS", 16])
    ds = SeededItems(AudioClipDataset(cfg, [good, loud, trunc], "pretrain"), seed=0)
    batch = skip_none_collate([ds[(i, i)] for i in range(3)])
    assert int(batch["num_skipped"]) == 2 and batch["input"].shape[0] == 1
    assert [d.split(" (")[0] for d in batch["bad_items"]] == [loud, trunc]


def test_bad_data_stop_in_a_later_micro_batch_resumes_the_tokenizer_phase_exactly(toy_plugin, tmp_path):
    """SOLVER.ACCUM_STEPS 2 in the tokenizer phase: the budget is exceeded while loading the second
    micro-batch of step 8, after the first one's forward already moved the EMA codebooks and the
    dead-code window. The checkpoint written holds the state after 7 steps (not 7.5), and its
    resume ends bit-equal to a run that never stopped (model, codebooks, windows, optimizer)."""
    import re

    from bridle.checkpoint import load_checkpoint_file
    from bridle.engine import HookBase
    from bridle.registry import TRAINER
    from state_compare import max_state_diff

    extra = {
        "TRAINER.NAME": "tokenizer",
        "DATASETS.TOY.CORRUPT_EVERY": 8,
        "SOLVER.MAX_ITER": 8,
        "SOLVER.CHECKPOINT_PERIOD": 0,
        "SOLVER.ACCUM_STEPS": 2,
        "SOLVER.BATCH_SIZE_PER_GPU": 4,
    }
    loose = {**extra, "DATALOADER.MAX_BAD_FRACTION": 0.2}
    states = {}

    class Record(HookBase):
        def after_step(self):
            states[self.trainer.iter + 1] = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}

    full = TRAINER.get("tokenizer")(make_cfg(str(tmp_path / "full"), **loose))
    full.register_hooks([Record()])
    full.resume_or_load(resume=False)
    full.train()
    out = str(tmp_path / "stopped")
    t = _trainer("tokenizer", make_cfg(out, **extra))
    loads = []
    next_batch = t._next_batch
    t._next_batch = lambda: loads.append(t.iter) or next_batch()
    with pytest.raises(BadDataError, match=r"Wrote \S+ \(the state after 7 iterations\)") as e:
        t.train()
    assert loads[-2:] == [7, 7]  # it failed on step 8's second micro-batch
    saved = load_checkpoint_file(re.search(r"Wrote (\S+) \(the state", str(e.value)).group(1))
    assert saved["model"]["tokenizer.quantizer.window.slot"].item() > 0  # the usage window moved
    assert max_state_diff(saved["model"], states[7]) == 0.0
    r = TRAINER.get("tokenizer")(make_cfg(out, **loose))
    r.resume_or_load(resume=True)
    assert r.start_iter == 7
    r.train()
    a = load_checkpoint_file(os.path.join(str(tmp_path / "full"), "model_final.pth"))
    b = load_checkpoint_file(os.path.join(out, "model_final.pth"))
    assert max_state_diff(a["model"], b["model"]) == 0.0
    assert max_state_diff(a["optimizer"], b["optimizer"]) == 0.0
