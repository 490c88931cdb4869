"""The instruments demo's data builder (bridle_audio.instruments): the MIDI writer, the program
split (val and test instruments unseen in the pool and the labelled set), and fluidsynth renders
real, non-silent clips of the demo's length with family labels. Rendering needs the Debian
packages fluidsynth and fluid-soundfont-gm (requirements-apt.txt); without them those tests skip."""

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from bridle_audio import instruments as I

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not os.path.isfile(I.SOUNDFONT),
    reason=f"fluidsynth or {I.SOUNDFONT} missing: apt-get install -y fluidsynth fluid-soundfont-gm",
)


def test_vlq_and_midi_header():
    assert I._vlq(0) == b"\x00"
    assert I._vlq(127) == b"\x7f"
    assert I._vlq(128) == b"\x81\x00"
    assert I._vlq(0x3FFF) == b"\xff\x7f"
    assert I._vlq(0x200000) == b"\x81\x80\x80\x00"
    data = I.midi_file([(500, bytes([0x80, 60, 0])), (0, bytes([0xC0, 5])), (0, bytes([0x90, 60, 100]))])
    assert data[:4] == b"MThd" and int.from_bytes(data[8:10], "big") == 0  # format 0
    assert int.from_bytes(data[12:14], "big") == 1000  # ticks per quarter
    track = data[22:]
    assert data[14:18] == b"MTrk" and int.from_bytes(data[18:22], "big") == len(track)
    # tempo, then the events sorted by time with delta times: program change, note on, 500 ms later note off
    assert track == (
        b"\x00\xff\x51\x03\x0f\x42\x40"
        + b"\x00\xc0\x05"
        + b"\x00\x90\x3c\x64"
        + b"\x83\x74\x80\x3c\x00"
        + b"\x00\xff\x2f\x00"
    )


def test_program_split_keeps_val_and_test_instruments_unseen():
    split = I.program_split()
    assert split == I.program_split()  # deterministic
    for name, fam in I.FAMILIES:
        pool, val, test = (set(split[k][name]) for k in ("pool", "val", "test"))
        assert (len(pool), len(val), len(test)) == I.SPLIT_SIZES
        assert not pool & val and not pool & test and not val & test
        assert pool | val | test == set(range(8 * fam, 8 * fam + 8))  # all of the family's GM programs


def test_clip_notes_fit_the_clip():
    rng = np.random.default_rng(0)
    clip_ms = I.CLIP_SAMPLES * 1000 // I.SAMPLE_RATE
    for _ in range(200):
        notes = I.clip_notes(rng)
        assert notes and all(0 <= on < clip_ms and dur > 0 and 1 <= vel <= 127 for on, dur, _, vel in notes)
        fitted = I.fit_range(notes, 40, 57)
        assert all(40 <= p <= 57 for _, _, p, _ in fitted)


@needs_fluidsynth
def test_prepare_data_renders_labelled_clips_with_unseen_test_instruments(tmp_path):
    import soundfile as sf

    args = SimpleNamespace(pool=24, labelled=8, val=16, test=16, soundfont=I.SOUNDFONT)
    paths = I.prepare_data(str(tmp_path / "data"), args)
    split = I.program_split()
    names = [n for n, _ in I.FAMILIES]
    with open(tmp_path / "data" / "programs.json") as f:
        used = json.load(f)
    assert not set(used["val"]) & set(used["pool"]) and not set(used["test"]) & set(used["pool"])
    assert not set(used["test"]) & set(used["val"]) and set(used["labelled"]) <= set(used["pool"])
    for key in ("val", "test"):
        entries = json.load(open(paths[key]))["data"]
        assert [e["labels"] for e in entries] == [names[i % len(names)] for i in range(len(entries))]
        for e in entries:
            wav, sr = sf.read(e["wav"], dtype="float32")
            assert sr == I.SAMPLE_RATE and wav.shape == (I.CLIP_SAMPLES,)
            assert 0.25 < np.abs(wav).max() <= 1.0  # peak-normalised to 0.3-0.9, plus light noise
        assert set(used[key]) <= {p for progs in split[key].values() for p in progs}
    pool = json.load(open(paths["pool"]))["data"]
    labelled = json.load(open(paths["labelled"]))["data"]
    assert len(pool) == 24 and all(e["labels"] == "" for e in pool)  # the pool has no labels
    assert {e["wav"] for e in labelled} <= {e["wav"] for e in pool} and len(labelled) == 8
    with open(paths["labels"]) as f:
        assert f.read().splitlines()[1:] == [f"{i},{n},{n}" for i, n in enumerate(names)]
    # different programs of one family sound different: the clips are not all one timbre
    a = sf.read(json.load(open(paths["test"]))["data"][0]["wav"])[0]
    b = sf.read(json.load(open(paths["test"]))["data"][4]["wav"])[0]
    assert not np.allclose(a, b)


@needs_fluidsynth
def test_probe_ranges_finds_the_silent_keys_of_a_preset():
    ranges = I.probe_ranges([0, 43])  # acoustic grand piano, contrabass
    assert ranges[0][0] <= 36 and ranges[0][1] >= 84
    assert ranges[43][1] < 70  # FluidR3's contrabass has no sample for high notes
