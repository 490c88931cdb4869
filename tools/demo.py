#!/usr/bin/env python
"""`make demo`: BRIDLE end to end on real speech made on this machine.

1. speak the digits "zero".."nine" with espeak-ng in many voices, speeds and pitches;
2. tools/prepare_audio.py: 16 kHz mono, JSON manifests, label CSV (75% train / 25% eval);
3. the 3-phase BRIDLE schedule (encoder_cold -> tokenizer -> encoder) on the training clips;
4. fine-tune the pretrained encoder on spoken-digit classification, and the same model from
   scratch for comparison; print both accuracies on the held-out clips.
"""
import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
VARIANTS = ["", "+m3", "+f2", "+f4", "+m7"]
SPEEDS = [130, 175]


def say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def speak_digits(out_dir: str, per_word: int) -> int:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed: run `make apt` (Debian: apt-get install espeak-ng sox).")
    combos = list(itertools.product(VOICES, VARIANTS, SPEEDS))[:per_word]
    n = 0
    for word in WORDS:
        os.makedirs(os.path.join(out_dir, word), exist_ok=True)
        for i, (voice, variant, speed) in enumerate(combos):
            path = os.path.join(out_dir, word, f"{word}_{i:03d}.wav")
            if not os.path.exists(path):
                pitch = str(30 + (i * 7) % 40)
                subprocess.run(
                    ["espeak-ng", "-v", voice + variant, "-s", str(speed), "-p", pitch, "-w", path, word],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            n += 1
    return n


def run(args, env) -> None:
    cmd = [sys.executable] + args
    print("$ " + " ".join(os.path.relpath(a, REPO) if a.startswith(REPO) else a for a in args), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="output/demo")
    p.add_argument("--clips-per-word", type=int, default=60)
    p.add_argument("--skip-baseline", action="store_true", help="no from-scratch comparison")
    args = p.parse_args()
    out = os.path.abspath(args.output_dir)
    env = dict(os.environ, PYTHONPATH=REPO)
    t0 = time.time()

    say(f"1/4 speaking {len(WORDS)} digits x {args.clips_per_word} voices with espeak-ng")
    raw = os.path.join(out, "raw")
    n = speak_digits(raw, args.clips_per_word)
    print(f"{n} clips in {raw}")

    say("2/4 preparing: 16 kHz mono, manifests, labels")
    data = os.path.join(out, "data")
    run([os.path.join(REPO, "tools", "prepare_audio.py"), "folder", "--input", raw, "--output", data,
         "--labels-from-subdirs", "--eval-fraction", "0.25", "--workers", "2"], env)

    common = [f"DATASETS.AUDIO.TRAIN_MANIFEST", os.path.join(data, "train.json"),
              "DATASETS.AUDIO.LABEL_CSV", os.path.join(data, "class_labels_indices.csv")]
    say("3/4 BRIDLE pretraining: encoder_cold -> tokenizer -> encoder")
    pre = os.path.join(out, "pretrain")
    run([os.path.join(REPO, "tools", "train_net.py"), "--resume", "--config-file",
         os.path.join(REPO, "configs", "audio", "demo_pretrain.yaml"), "OUTPUT_DIR", pre] + common, env)

    say("4/4 fine-tuning on spoken-digit classification")
    ft_common = common + ["DATASETS.AUDIO.TEST_MANIFEST", os.path.join(data, "eval.json")]
    results = {}
    runs = [("BRIDLE-pretrained", os.path.join(pre, "2_encoder", "model_final.pth"))]
    if not args.skip_baseline:
        runs.append(("from scratch", ""))
    for name, weights in runs:
        ft = os.path.join(out, "finetune_" + ("pretrained" if weights else "scratch"))
        run([os.path.join(REPO, "tools", "train_net.py"), "--config-file",
             os.path.join(REPO, "configs", "audio", "demo_finetune.yaml"), "OUTPUT_DIR", ft,
             "MODEL.WEIGHTS", weights] + ft_common, env)
        with open(os.path.join(ft, "final_results.json")) as f:
            results[name] = json.load(f)

    say(f"results on {os.path.join(data, 'eval.json')} (held-out clips), {time.time() - t0:.0f} s in all")
    for name, res in results.items():
        last = res.get("last", res)
        test = last.get("test", last)
        print(f"  {name:<18} " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(test.items())
                                         if isinstance(v, (int, float))))
    print(f"Outputs: {out} (metrics.json, TensorBoard in */tb, checkpoints)")


if __name__ == "__main__":
    main()
