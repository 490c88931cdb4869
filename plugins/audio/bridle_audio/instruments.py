"""A second real-audio demo set that the audio recipe was not tuned on: which General-MIDI
instrument family plays a short clip, with the val and test instruments never heard in
pretraining or in the labelled set.

1. data: this module writes standard MIDI files itself (:func:`midi_file`, format 0, 1 tick =
   1 ms) and renders them with fluidsynth and the FluidR3 GM soundfont (Debian packages
   ``fluidsynth`` and ``fluid-soundfont-gm``), reverb and chorus off, at 16 kHz. Each clip is
   0.655 s (64 fbank frames, the digits demo's input): one note, a chord, a 2-4 note melody or
   an arpeggio at a random pitch (MIDI 45-75, the same range for every family, transposed by
   octaves only where a preset has no sample there, :func:`probe_ranges`), random velocities
   and note lengths (tempo), starting 0-80 ms into the clip, peak-normalised to a random level
   over light coloured noise (SNR 25-40 dB);
2. labels: 8 GM families of 8 programs each (:data:`FAMILIES`). In every family 4 programs
   play the unlabelled pool (and the labelled subset drawn from it), 2 others the val clips and
   the remaining 2 the test clips (:func:`program_split`): val and test instruments never occur
   in pretraining or fine-tuning;
3. the audio demo's protocol (bridle/demo/driver.py): the BRIDLE schedule on the pool, linear
   probe and fine-tuning of the iteration-1 / final / randomly initialised encoder on the
   labelled subset (val-selected; nothing selected on test), logistic regression on the raw
   log-mel input, the final tokenizer's code usage; the same report.json keys.

Run by tools/demo_instruments.py (configs/audio/demo_instruments_*.yaml); ``--study NAME
[KEY VALUE ...]`` runs one recipe variant scored on a val-instrument selection split
(:func:`study_main`, bridle/demo/study.py).
"""

import concurrent.futures
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from bridle import demo as demo_lib
from bridle.demo import REPO, say
from bridle.demo import study as demo_study

from .demo import CLIP_SAMPLES, SAMPLE_RATE, coloured_noise, manifest_spec, write_manifest

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# General MIDI level 1 instrument families (program = 8 * family + k, k = 0..7; 0-based
# programs): the eight used here, by name and GM family index.
FAMILIES = [
    ("piano", 0),
    ("chromatic_percussion", 1),
    ("organ", 2),
    ("guitar", 3),
    ("bass", 4),
    ("strings", 5),
    ("brass", 7),
    ("reed", 8),
]
PROGRAM_SPLIT_SEED = 2026  # which programs of a family go to pool / val / test
SPLIT_SIZES = (4, 2, 2)  # programs per family: pool, val, test
PITCH_RANGE = (45, 75)  # MIDI notes (A2 .. D#5), the same for every family
SPACING_MS = 1500  # one clip every 1.5 s in a rendered file: a note's release fades in between
CHUNK = 250  # clips per rendered MIDI file (files render in parallel)


# ---------------------------------------------------------------------------- MIDI
def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity (7 bits per byte, high bit = more follows)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_file(events: Sequence[Tuple[int, bytes]]) -> bytes:
    """A format-0 standard MIDI file of ``events`` = [(time_ms, message bytes)] (stable-sorted by
    time): division 1000 ticks per quarter at 1,000,000 us per quarter, so 1 tick = 1 ms."""
    track = bytearray(b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big"))  # tempo
    now = 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        track += _vlq(t - now) + msg
        now = t
    track += b"\x00\xff\x2f\x00"  # end of track
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1000) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def clip_notes(rng) -> List[Tuple[int, int, int, int]]:
    """[(onset_ms, duration_ms, pitch, velocity)] of one clip: a note, a chord, a melody fragment
    or an arpeggio at a random pitch, velocity and tempo, inside the clip's 655 ms."""
    clip_ms = CLIP_SAMPLES * 1000 // SAMPLE_RATE
    start = int(rng.integers(0, 81))
    base = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] - 6))
    vel = lambda: int(rng.integers(50, 121))  # noqa: E731
    kind = rng.choice(["note", "chord", "melody", "arpeggio"])
    if kind in ("note", "chord"):
        dur = int(rng.integers(300, clip_ms - start + 100))  # some notes are still sounding at the end
        pitches = [base] if kind == "note" else [base, base + int(rng.choice([3, 4])), base + 7]
        return [(start, dur, p, vel()) for p in pitches]
    n = int(rng.integers(2, 5))
    step = int(rng.integers(110, (clip_ms - start) // n + 1))  # tempo: 2-4 notes fill the clip
    if kind == "melody":
        pitches = [base]
        for _ in range(n - 1):
            pitches.append(int(min(max(pitches[-1] + rng.integers(-5, 6), PITCH_RANGE[0]), PITCH_RANGE[1])))
        return [(start + i * step, int(step * rng.uniform(0.6, 1.0)), p, vel()) for i, p in enumerate(pitches)]
    chord = [base, base + int(rng.choice([3, 4])), base + 7, base + 12]
    return [(start + i * step, clip_ms - start - i * step + 100, chord[i], vel()) for i in range(n)]  # held


def render(events, wav_path: str, soundfont: str = SOUNDFONT) -> None:
    """Render MIDI events to a 16 kHz WAV with fluidsynth (fast render, no MIDI input or shell,
    reverb and chorus off so that clips of one file do not bleed into each other)."""
    with tempfile.NamedTemporaryFile(suffix=".mid", delete=False) as f:
        f.write(midi_file(events))
    try:
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLE_RATE)]
            + ["-T", "wav", "-F", wav_path, soundfont, f.name],
            check=True,
            capture_output=True,
        )
    finally:
        os.remove(f.name)


PROBE_PITCHES = list(range(24, 97, 3))  # the notes probe_ranges renders for each program


def probe_ranges(programs: Sequence[int], soundfont: str = SOUNDFONT, work_dir: str = "") -> dict:
    """{program: (lowest, highest) audible MIDI note}: each program plays every note of
    PROBE_PITCHES once (one fluidsynth call); a soundfont's preset may have no sample above or
    below some key (FluidR3's contrabass is silent at E4), so the clips keep inside this range."""
    import numpy as np
    import soundfile as sf

    events, slots = [], []
    for program in programs:
        events.append((len(slots) * 300, bytes([0xC0, program])))
        for pitch in PROBE_PITCHES:
            t = len(slots) * 300
            events += [(t, bytes([0x90, pitch, 100])), (t + 150, bytes([0x80, pitch, 0]))]
            slots.append((program, pitch))
    fd, wav = tempfile.mkstemp(suffix=".wav", dir=work_dir or None)
    os.close(fd)
    try:
        render(events, wav, soundfont)
        audio = sf.read(wav, dtype="float32", always_2d=True)[0].mean(1)
    finally:
        os.remove(wav)
    step = 300 * SAMPLE_RATE // 1000
    audible = {}
    for i, (program, pitch) in enumerate(slots):
        if np.abs(audio[i * step : i * step + step // 2]).max(initial=0.0) > 1e-3:
            audible.setdefault(program, []).append(pitch)
    missing = sorted(set(programs) - set(audible))
    if missing:
        raise RuntimeError(f"{soundfont}: programs {missing} are silent at every probed note")
    return {p: (min(v), max(v)) for p, v in audible.items()}


def fit_range(notes, lo: int, hi: int):
    """Transpose a clip's notes by octaves into [lo, hi]; notes still outside are clamped."""
    pitches = [n[2] for n in notes]
    shift = 0
    while min(pitches) + shift < lo and max(pitches) + shift + 12 <= hi:
        shift += 12
    while max(pitches) + shift > hi and min(pitches) + shift - 12 >= lo:
        shift -= 12
    return [(on, dur, min(max(p + shift, lo), hi), v) for on, dur, p, v in notes]


# ---------------------------------------------------------------------------- splits
def program_split(seed: int = PROGRAM_SPLIT_SEED) -> dict:
    """{"pool"|"val"|"test": {family name: [GM programs]}}: each family's 8 programs shuffled with
    ``seed`` and cut 4 / 2 / 2, so the three splits share no instrument."""
    rng = random.Random(seed)
    out = {"pool": {}, "val": {}, "test": {}}
    for name, fam in FAMILIES:
        progs = [8 * fam + k for k in range(8)]
        rng.shuffle(progs)
        a, b = SPLIT_SIZES[0], SPLIT_SIZES[0] + SPLIT_SIZES[1]
        out["pool"][name], out["val"][name], out["test"][name] = (
            sorted(progs[:a]),
            sorted(progs[a:b]),
            sorted(progs[b:]),
        )
    return out


def _render_chunk(job) -> List[dict]:
    """Render clips [(path, family name, program, seed)] through one MIDI file, then cut, normalise
    and mix each clip over noise."""
    import numpy as np
    import soundfile as sf

    clips, tmp_wav, soundfont, ranges = job
    events, rngs = [], []
    for i, (_, _, program, seed) in enumerate(clips):
        rng = np.random.default_rng(seed)
        rngs.append(rng)
        t0 = i * SPACING_MS
        events.append((t0, bytes([0xC0, program])))  # program change, channel 0
        for on, dur, pitch, vel in fit_range(clip_notes(rng), *ranges[program]):
            events.append((t0 + on, bytes([0x90, pitch, vel])))
            events.append((t0 + on + dur, bytes([0x80, pitch, 0])))
    render(events, tmp_wav, soundfont)
    audio, sr = sf.read(tmp_wav, dtype="float32", always_2d=True)
    os.remove(tmp_wav)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {SAMPLE_RATE}")
    audio = audio.mean(1)
    out = []
    for i, ((path, family, program, _), rng) in enumerate(zip(clips, rngs)):
        a = i * SPACING_MS * SAMPLE_RATE // 1000
        x = np.zeros(CLIP_SAMPLES, np.float32)
        seg = audio[a : a + CLIP_SAMPLES]
        x[: len(seg)] = seg
        peak = float(np.abs(x).max())
        if peak < 1e-4:
            raise RuntimeError(f"program {program} rendered a silent clip ({path})")
        x = x / peak * rng.uniform(0.3, 0.9)
        rms = np.sqrt((x**2).mean())
        x = x + coloured_noise(CLIP_SAMPLES, rng) * rms * 10 ** (-rng.uniform(25.0, 40.0) / 20)
        sf.write(path, np.clip(x, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        out.append({"wav": path, "labels": family, "program": program})
    return out


def make_split(out_dir: str, name: str, count: int, programs: dict, seed: int, soundfont: str = SOUNDFONT):
    """``count`` clips, families balanced (clip i plays family i mod 8), each by a program drawn
    from ``programs[family]``; rendered CHUNK clips per fluidsynth call, in parallel."""
    rng = random.Random(seed)
    out_dir = os.path.abspath(out_dir)  # the manifests hold absolute paths
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    names = [n for n, _ in FAMILIES]
    clips = []
    for i in range(count):
        fam = names[i % len(names)]
        clips.append(
            (os.path.join(out_dir, name, f"{name}_{i:05d}.wav"), fam, rng.choice(programs[fam]), rng.randrange(2**31))
        )
    ranges = probe_ranges(sorted({c[2] for c in clips}), soundfont, out_dir)
    jobs = [
        (clips[k : k + CHUNK], os.path.join(out_dir, name, f".render_{k}.wav"), soundfont, ranges)
        for k in range(0, count, CHUNK)
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return [e for chunk in pool.map(_render_chunk, jobs) for e in chunk]


SPLIT_SEEDS = {"pool": 1, "val": 2, "test": 3, "labelled": 4}


def prepare_data(data: str, args) -> dict:
    """Render the clips and write the manifests (kept when they already exist) and programs.json
    (which GM programs each split's clips use)."""
    paths = {k: os.path.join(data, f"{k}.json") for k in ("pool", "labelled", "val", "test")}
    paths["labels"] = os.path.join(data, "class_labels_indices.csv")
    if all(os.path.isfile(p) for p in paths.values()):
        print(f"data already in {data}")
        return paths
    shutil.rmtree(os.path.join(os.path.dirname(data), "fbank_cache"), ignore_errors=True)  # stale
    os.makedirs(data, exist_ok=True)
    split = program_split()
    pool = make_split(data, "pool", args.pool, split["pool"], SPLIT_SEEDS["pool"], args.soundfont)
    val = make_split(data, "val", args.val, split["val"], SPLIT_SEEDS["val"], args.soundfont)
    test = make_split(data, "test", args.test, split["test"], SPLIT_SEEDS["test"], args.soundfont)
    labelled = random.Random(SPLIT_SEEDS["labelled"]).sample(pool, args.labelled)
    with open(os.path.join(data, "programs.json"), "w") as f:
        json.dump(
            {
                k: sorted({e["program"] for e in v})
                for k, v in (("pool", pool), ("labelled", labelled), ("val", val), ("test", test))
            },
            f,
            indent=1,
        )
    write_manifest(paths["pool"], [{"wav": e["wav"], "labels": ""} for e in pool])  # no labels
    write_manifest(paths["labelled"], labelled)
    write_manifest(paths["val"], val)
    write_manifest(paths["test"], test)
    with open(paths["labels"], "w") as f:
        f.write("index,mid,display_name\n" + "".join(f"{i},{n},{n}\n" for i, (n, _) in enumerate(FAMILIES)))
    print(
        f"{len(pool)} unlabelled pool clips ({len(labelled)} of them also labelled) by "
        f"{sum(map(len, split['pool'].values()))} GM programs; {len(val)} val and {len(test)} test clips by "
        f"{sum(map(len, split['val'].values()))} / {sum(map(len, split['test'].values()))} other programs; in {data}"
    )
    return paths


# ---------------------------------------------------------------------------- run
def parser():
    p = demo_lib.base_parser(__doc__, "output/demo_instruments")
    p.epilog = STUDY_DOC
    p.add_argument("--pool", type=int, default=2000, help="unlabelled pretraining clips")
    p.add_argument("--labelled", type=int, default=200, help="labelled clips (drawn from the pool)")
    p.add_argument("--val", type=int, default=200, help="validation clips (unseen instruments)")
    p.add_argument("--test", type=int, default=400, help="test clips (other unseen instruments)")
    p.add_argument("--soundfont", default=SOUNDFONT, help="General-MIDI soundfont (.sf2) fluidsynth renders with")
    p.add_argument(
        "--study",
        nargs=argparse_remainder(),
        metavar="NAME [KEY VALUE ...]",
        help="instead of the demo: the recipe study of one variant (see below); needs a finished demo in --output-dir",
    )
    return p


def argparse_remainder():
    import argparse

    return argparse.REMAINDER


def configs(config_dir: str) -> dict:
    """The instruments configs: demo_instruments_{pretrain,finetune,linprobe}.yaml in ``config_dir``."""
    return {
        f"{k}_config": os.path.join(config_dir, f"demo_instruments_{k}.yaml")
        for k in ("pretrain", "finetune", "linprobe")
    }


def make_spec(args, out: str) -> demo_lib.DemoSpec:
    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth is not installed: run `make apt` (Debian: apt-get install fluidsynth fluid-soundfont-gm).")
    if not os.path.isfile(args.soundfont):
        sys.exit(f"--soundfont: no file '{args.soundfont}' (Debian: apt-get install fluid-soundfont-gm)")
    if not 0 < args.labelled <= args.pool:
        sys.exit("--labelled must be in [1, --pool]")
    say("Rendering General-MIDI instrument clips with fluidsynth; manifests")
    data = prepare_data(os.path.join(out, "data"), args)
    n = len(FAMILIES)
    return manifest_spec(
        "audio_instruments",
        f"GM instrument-family top-1 accuracy ({n} classes, chance {1 / n:.3f}), {args.labelled} labelled "
        f"clips, {args.test} test clips by unseen instruments",
        data,
        args,
        out,
        configs(args.config_dir or os.path.join(REPO, "configs", "audio")),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parser().parse_args(argv)
    if args.study is not None:
        study_args = ["--demo-dir", args.output_dir, "--out", os.path.join(args.output_dir, "study")]
        return study_main(study_args + args.study, args)
    out = os.path.abspath(args.output_dir)
    t0 = time.time()
    spec = make_spec(args, out)
    demo_lib.run_demo(spec, out, skip_baseline=args.skip_baseline, t_data=time.time() - t0)


# ---------------------------------------------------------------------------- the recipe study
STUDY_DOC = """The instruments demo's recipe study: one variant of the BRIDLE schedule, scored by the
demo's linear probe on a selection split of val instruments, never on the test split.

    python tools/demo_instruments.py [--output-dir DIR] --study [--fresh] NAME [KEY VALUE ...]

Needs a finished demo in --output-dir. The selection split (`<dir>/data/studyval.json`, 1000 clips
by the val programs, made once) is five times the demo's val split. NAME `iter1` scores the
demo's iteration-1 encoder, NAME `random_init` a randomly initialised one; `--fresh` runs the
whole schedule (also scoring its iteration 1), otherwise the demo's iteration-1 phase is reused.
Scores are appended to `<dir>/study/results.jsonl`.
"""
SELECTION_CLIPS = 1000
SELECTION_SEED = 22  # the demo's splits use seeds 1-4


def selection_split(data: str, soundfont: str = SOUNDFONT) -> str:
    path = os.path.join(data, "studyval.json")
    if not os.path.isfile(path):
        entries = make_split(data, "studyval", SELECTION_CLIPS, program_split()["val"], SELECTION_SEED, soundfont)
        write_manifest(path, entries)
    return path


def study_main(argv: Sequence[str], demo_args=None) -> None:
    demo_args = demo_args or parser().parse_args([])

    def inputs(demo_dir: str):
        spec = make_spec(demo_args, demo_dir)
        # the study scores the final encoder offline: no online probes (they need a probe set and
        # leave the weights bit-equal; the resume check ignores them)
        spec.pretrain_opts += ["TEST.ONLINE_PROBE.ENABLED", "False"]
        selection = selection_split(os.path.join(demo_dir, "data"), demo_args.soundfont)
        return spec, ["DATASETS.AUDIO.VAL_MANIFEST", selection, "DATASETS.AUDIO.TEST_MANIFEST", selection]

    argv = list(argv)
    a = demo_study.build_parser(STUDY_DOC, "", "").parse_args(argv)
    if a.name != "random_init":
        return demo_study.main(argv, STUDY_DOC, inputs, demo_command="python tools/demo_instruments.py")
    # the reference: the same linear probe of a randomly initialised encoder on the selection split
    demo_dir, out = os.path.abspath(a.demo_dir), os.path.abspath(a.out)
    spec, sel = inputs(demo_dir)
    lp = os.path.join(out, "random_init", "linprobe")
    demo_lib.train_net(
        spec.linprobe_config,
        lp,
        ["MODEL.WEIGHTS", ""] + spec.downstream_opts + sel,
        demo_lib.demo_env(),
        overwrite=True,
    )
    with open(os.path.join(lp, "final_results.json")) as f:
        top1 = demo_lib.selected(json.load(f))["val_top1"]
    row = {"variant": "random_init", "selection_top1": round(top1, 4), "weights": ""}
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
