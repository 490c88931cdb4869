"""`make demo`: BRIDLE end to end on real speech made on this machine, in the setting where
self-supervised pretraining is meant to help: many unlabelled clips, few labelled ones.

1. data: espeak-ng speaks the digits "zero".."nine" in many voices (accent x voice variant),
   pitches and speeds; each word is spoken at the speed that makes it fill 70-95% of a 0.655 s
   clip (64 fbank frames), placed at a random offset over light coloured background noise, so
   no patch of the spectrogram is padding or silence and where the word sits says nothing
   about which word it is;
2. splits (AudioMAE JSON manifests + label CSV): an unlabelled pretraining pool, a small
   labelled subset of it (10%), and validation / test clips by voice variants that never occur
   in the pool (speaker-independent evaluation);
3. the 3-phase BRIDLE schedule (encoder_cold -> tokenizer -> encoder) on the unlabelled pool;
4. fine-tuning and linear probing on the labelled subset, starting from the iteration-1 and the
   final BRIDLE encoder and from a randomly initialised one (the same model, same recipe), plus
   logistic regression on the raw log-mel input; the final tokenizer's code usage over the pool.
   The reported test accuracy is that of the evaluation selected on the validation split;
   nothing is selected on test. Table on stdout, OUTPUT_DIR/report.json, OUTPUT_DIR/plots/*.png
   (shared machinery: bridle/demo/driver.py; the image twin: bridle_image/demo.py).

Run by tools/demo.py (`make demo`); tools/demo_study.py runs :func:`study_main`.
"""

import concurrent.futures
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

from bridle import demo as demo_lib
from bridle.demo import REPO, say
from bridle.demo import study as demo_study

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Mean length (s) of each word at 175 words/min over the voices below, leading and trailing
# silence trimmed: the speed that makes a word fill a given length is derived from it.
SECONDS_AT_175 = [0.436, 0.378, 0.286, 0.344, 0.362, 0.436, 0.406, 0.466, 0.295, 0.435]
# Speakers = espeak-ng accent + voice variant. Variants are split between the pool, val and
# test, so val/test voices are never heard in pretraining or fine-tuning.
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
POOL_VARIANTS = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "f1",
    "f2",
    "f3",
    "Alex",
    "Andy",
    "Annie",
    "aunty",
    "benjamin",
    "caleb",
    "david",
    "ed",
    "edward",
    "john",
    "linda",
    "max",
    "Michael",
    "paul",
    "rob",
    "steph",
    "zac",
    "norbert",
    "shelby",
    "klatt",
    "klatt3",
]
VAL_VARIANTS = ["m7", "f4", "travis", "robert", "klatt2"]
TEST_VARIANTS = ["m8", "f5", "belinda", "victor", "grandpa", "klatt4", "quincy"]
SAMPLE_RATE = 16000
FRAMES = 64  # = INPUT.AUDIO.TARGET_LENGTH of configs/audio/demo_*.yaml (10 ms hop, 25 ms window)
CLIP_SAMPLES = (FRAMES - 1) * SAMPLE_RATE // 100 + SAMPLE_RATE * 25 // 1000  # exactly FRAMES frames


# ---------------------------------------------------------------------------- data
def speak(word: str, voice: str, speed: int, pitch: int):
    """espeak-ng speech as float32 at 16 kHz, leading/trailing silence (< -40 dB) trimmed."""
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        check=True,
        capture_output=True,
    ).stdout
    wav, sr = sf.read(io.BytesIO(out), dtype="float32")
    wav = AF.resample(torch.from_numpy(wav)[None], sr, SAMPLE_RATE)[0].numpy()
    hop = SAMPLE_RATE // 100
    n = len(wav) // hop
    energy = np.sqrt((wav[: n * hop].reshape(n, hop) ** 2).mean(1) + 1e-12)
    on = np.nonzero(energy > energy.max() * 0.01)[0]
    return wav[on[0] * hop : (on[-1] + 1) * hop]


def coloured_noise(n: int, rng):
    """Noise with power spectrum ~ f^-alpha, alpha in [0.5, 1.5] (between white and brown), unit RMS."""
    import numpy as np

    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec * f ** (-rng.uniform(0.5, 1.5) / 2), n)
    return (x / (np.sqrt((x**2).mean()) + 1e-12)).astype(np.float32)


def make_clip(job) -> dict:
    """One clip: ``digit`` spoken by ``voice`` at a random offset over background noise."""
    import numpy as np
    import soundfile as sf

    path, digit, voice, seed = job
    rng = np.random.default_rng(seed)
    n = CLIP_SAMPLES
    pitch = int(rng.integers(20, 80))
    speed = int(np.clip(175 * SECONDS_AT_175[digit] * SAMPLE_RATE / (rng.uniform(0.7, 0.95) * n), 80, 450))
    speech = speak(WORDS[digit], voice, speed, pitch)
    while len(speech) > n and speed < 450:  # this voice is slower than average: speak faster
        speed += 20
        speech = speak(WORDS[digit], voice, speed, pitch)
    speech = speech[:n] / (np.abs(speech).max() + 1e-9) * rng.uniform(0.3, 0.9)
    rms = np.sqrt((speech**2).mean())
    clip = coloured_noise(n, rng) * rms * 10 ** (-rng.uniform(20.0, 35.0) / 20)  # SNR 20-35 dB
    start = int(rng.integers(0, n - len(speech) + 1))
    clip[start : start + len(speech)] += speech
    sf.write(path, np.clip(clip, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return {"wav": path, "labels": WORDS[digit]}


def make_split(out_dir: str, name: str, count: int, variants, seed: int):
    """``count`` clips (digits balanced) by speakers whose variant is in ``variants``."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    jobs = [
        (
            os.path.join(out_dir, name, f"{name}_{i:05d}.wav"),
            i % 10,
            f"{rng.choice(ACCENTS)}+{rng.choice(variants)}",
            rng.randrange(2**31),
        )
        for i in range(count)
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(make_clip, jobs))


def write_manifest(path: str, entries) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump({"data": [{"wav": e["wav"], "labels": e["labels"]} for e in entries]}, f, indent=1)
    os.replace(path + ".tmp", path)


def prepare_data(data: str, args) -> dict:
    """Generate the clips and write the manifests (kept when they already exist)."""
    paths = {k: os.path.join(data, f"{k}.json") for k in ("pool", "labelled", "val", "test")}
    paths["labels"] = os.path.join(data, "class_labels_indices.csv")
    if all(os.path.isfile(p) for p in paths.values()):
        print(f"data already in {data}")
        return paths
    shutil.rmtree(os.path.join(os.path.dirname(data), "fbank_cache"), ignore_errors=True)  # stale
    os.makedirs(data, exist_ok=True)
    pool = make_split(data, "pool", args.pool, POOL_VARIANTS, seed=1)
    val = make_split(data, "val", args.val, VAL_VARIANTS, seed=2)
    test = make_split(data, "test", args.test, TEST_VARIANTS, seed=3)
    labelled = random.Random(4).sample(pool, args.labelled)
    write_manifest(paths["pool"], [{"wav": e["wav"], "labels": ""} for e in pool])  # no labels
    write_manifest(paths["labelled"], labelled)
    write_manifest(paths["val"], val)
    write_manifest(paths["test"], test)
    with open(paths["labels"], "w") as f:
        f.write("index,mid,display_name\n" + "".join(f"{i},{w},{w}\n" for i, w in enumerate(WORDS)))
    print(
        f"{len(pool)} unlabelled pool clips ({len(labelled)} of them also labelled) by "
        f"{len(POOL_VARIANTS)} voice variants; {len(val)} val and {len(test)} test clips by "
        f"{len(VAL_VARIANTS)} / {len(TEST_VARIANTS)} other variants; in {data}"
    )
    return paths


# ---------------------------------------------------------------------------- run
def parser():
    p = demo_lib.base_parser(__doc__, "output/demo")
    p.add_argument("--pool", type=int, default=2000, help="unlabelled pretraining clips")
    p.add_argument("--labelled", type=int, default=200, help="labelled clips (drawn from the pool)")
    p.add_argument("--val", type=int, default=200, help="validation clips (unseen voices)")
    p.add_argument("--test", type=int, default=400, help="test clips (other unseen voices)")
    return p


def make_spec(args, out: str) -> demo_lib.DemoSpec:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed: run `make apt` (Debian: apt-get install espeak-ng sox).")
    if not 0 < args.labelled <= args.pool:
        sys.exit("--labelled must be in [1, --pool]")
    say("Speaking digits with espeak-ng over background noise; manifests")
    data = prepare_data(os.path.join(out, "data"), args)
    return manifest_spec(
        "audio",
        f"spoken-digit top-1 accuracy (10 classes, chance 0.10), {args.labelled} labelled clips, "
        f"{args.test} test clips by unseen voices",
        data,
        args,
        out,
        demo_lib.spec_configs(args.config_dir or os.path.join(REPO, "configs", "audio")),
    )


def manifest_spec(name: str, task: str, data: dict, args, out: str, configs: dict) -> demo_lib.DemoSpec:
    """The DemoSpec of an audio demo whose data are manifests: ``data`` pool / labelled / val / test
    manifests and the label CSV, the fbank cache of un-augmented items in ``out``, the command line's
    extra opts and item counts (``args``), ``configs`` its pretrain / finetune / linprobe files."""
    cache = ["DATASETS.AUDIO.FBANK_CACHE_DIR", os.path.join(out, "fbank_cache")]  # un-augmented items
    return demo_lib.DemoSpec(
        name=name,
        task=task,
        pretrain_opts=["DATASETS.AUDIO.TRAIN_MANIFEST", data["pool"], "DATASETS.AUDIO.LABEL_CSV", ""]
        + cache
        + args.pretrain_opts,
        downstream_opts=[
            "DATASETS.AUDIO.TRAIN_MANIFEST",
            data["labelled"],
            "DATASETS.AUDIO.VAL_MANIFEST",
            data["val"],
            "DATASETS.AUDIO.TEST_MANIFEST",
            data["test"],
            "DATASETS.AUDIO.LABEL_CSV",
            data["labels"],
        ]
        + cache
        + args.downstream_opts,
        notes={
            "pool_items": args.pool,
            "labelled_items": args.labelled,
            "val_items": args.val,
            "test_items": args.test,
        },
        **configs,
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parser().parse_args(argv)
    out = os.path.abspath(args.output_dir)
    t0 = time.time()
    spec = make_spec(args, out)
    demo_lib.run_demo(spec, out, skip_baseline=args.skip_baseline, t_data=time.time() - t0)


# ---------------------------------------------------------------------------- the recipe study
STUDY_DOC = """The audio demo's recipe study (docs/demos.md): one variant of the BRIDLE schedule, scored by
the demo's linear probe on a selection split, never on the test split.

    python tools/demo_study.py [--fresh] NAME [KEY VALUE ...]

Needs a finished `make demo` (its data, fbank cache and pretraining run in --demo-dir). The
selection split (`<demo-dir>/data/studyval.json`, 1000 clips by the val voices, made once) is
five times the demo's val split, so differences of ~2 points are outside its standard error.

- Default: copy the demo's finished iteration-1 phase (`0_encoder_cold`) into
  `<out>/NAME/pretrain` and resume the schedule there with the KEY VALUE overrides (the
  resume check reuses that phase only when the overrides leave it unchanged).
- `--fresh`: run the whole schedule (e.g. with `SEED 1`, or overrides that change iteration 1) and
  also score its iteration-1 encoder (`NAME_iter1`).
- NAME `iter1`: score the demo's own iteration-1 encoder.

Each score (val-selected top-1 on the selection split) is printed and appended to
`<out>/results.jsonl`.
"""
SELECTION_CLIPS = 1000
SELECTION_SEED = 22  # the demo's splits use seeds 1-4


def selection_split(data: str) -> str:
    path = os.path.join(data, "studyval.json")
    if not os.path.isfile(path):
        entries = make_split(data, "studyval", SELECTION_CLIPS, VAL_VARIANTS, seed=SELECTION_SEED)
        write_manifest(path, entries)
    return path


def study_inputs(demo_dir: str) -> Tuple[demo_lib.DemoSpec, List[str]]:
    """The demo's spec (its default options, its data in ``demo_dir``) and the overrides that
    point the linear probe's val and test splits at the selection split."""
    spec = make_spec(parser().parse_args(["--output-dir", demo_dir]), demo_dir)  # the demo's options
    selection = selection_split(os.path.join(demo_dir, "data"))
    return spec, ["DATASETS.AUDIO.VAL_MANIFEST", selection, "DATASETS.AUDIO.TEST_MANIFEST", selection]


def study_main(argv: Optional[Sequence[str]] = None) -> None:
    demo_study.main(argv, STUDY_DOC, study_inputs)
