"""Mean and std of a dataset's log-mel fbanks, for INPUT.AUDIO.NORM_MEAN / NORM_STD.

Two numbers are reported:
  * padded   — over [TARGET_LENGTH, mel] inputs exactly as the datasets build them before
               normalisation (zero padding included, crop from the start). This is the
               AST/AudioMAE convention behind the published AudioSet/ESC-50 statistics; put
               these in the config.
  * unpadded — over the real frames only (for reference).

Run as ``python -m bridle_audio.stats`` or ``python tools/compute_audio_stats.py`` (the same).

Examples:
  python tools/compute_audio_stats.py --manifest data/audioset/balanced_train_segments.json
  python tools/compute_audio_stats.py --esc50-root data/esc50 --target-length 512
  python tools/compute_audio_stats.py --folder ~/clips --max-clips 2000 --workers 8
"""

import argparse
import json
import os
import sys
from multiprocessing import Pool
from typing import Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .convert import clip_fbank_sums, init_worker
from .features import FbankParams
from .manifest import DEFAULT_EXTENSIONS, list_audio_files, read_esc50_meta, read_manifest


def compute_stats(paths: Sequence[str], params: FbankParams, target_length: int, workers: int = 1) -> dict:
    """Exact (float64) statistics over ``paths``; unreadable clips are skipped and counted."""
    s = ss = 0.0
    frames = clips = failed = 0
    jobs = [(p, params, target_length) for p in paths]
    if workers > 1:
        pool = Pool(workers, initializer=init_worker)
        it = pool.imap(clip_fbank_sums, jobs, chunksize=16)
    else:
        pool, it = None, map(clip_fbank_sums, jobs)
    try:
        for a, b, n, ok in tqdm(it, total=len(jobs), desc="fbank stats", unit="clip"):
            if not ok:
                failed += 1
                continue
            s, ss, frames, clips = s + a, ss + b, frames + n, clips + 1
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if clips == 0:
        raise RuntimeError("compute_audio_stats: no clip could be read.")
    bins = params.num_mel_bins

    def mean_std(count: int) -> Tuple[float, float]:
        mean = s / count
        return mean, float(np.sqrt(max(ss / count - mean * mean, 0.0)))

    padded, unpadded = mean_std(clips * target_length * bins), mean_std(frames * bins)
    return {
        "clips": clips,
        "failed": failed,
        "target_length": target_length,
        "mean": padded[0],
        "std": padded[1],
        "unpadded_mean": unpadded[0],
        "unpadded_std": unpadded[1],
    }


def collect_paths(args) -> list:
    if args.manifest:
        entries = read_manifest(args.manifest)
        root = args.root or os.path.dirname(os.path.abspath(args.manifest))
        return [e["wav"] if os.path.isabs(e["wav"]) else os.path.join(root, e["wav"]) for e in entries]
    if args.esc50_root:
        return [os.path.join(args.esc50_root, "audio", str(r["filename"])) for r in read_esc50_meta(args.esc50_root)]
    return list_audio_files(args.folder, args.extensions)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="AudioMAE JSON manifest")
    src.add_argument("--folder", help="folder of clips (recursive)")
    src.add_argument("--esc50-root", help="ESC-50 root (meta/esc50.csv + audio/)")
    parser.add_argument("--root", default="", help="base of relative manifest paths (default: manifest dir)")
    parser.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS))
    parser.add_argument("--target-length", type=int, default=1024, help="frames per item (ESC-50: 512)")
    parser.add_argument("--num-mel-bins", type=int, default=128)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--max-clips", type=int, default=0, help="use an evenly spaced subset (0 = all)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--output", default="", help="also write the result as JSON here")
    args = parser.parse_args(argv)

    paths = collect_paths(args)
    if not paths:
        sys.exit("compute_audio_stats: no clips found.")
    if 0 < args.max_clips < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.max_clips).round().astype(int)]
    params = FbankParams(sample_rate=args.sample_rate, num_mel_bins=args.num_mel_bins)
    stats = compute_stats(paths, params, args.target_length, args.workers)
    print(json.dumps(stats, indent=1))
    print(
        f"# {stats['clips']} clips ({stats['failed']} unreadable). Config:\n"
        f"INPUT:\n  AUDIO:\n    NORM_MEAN: {stats['mean']:.7f}\n    NORM_STD: {stats['std']:.7f}"
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1)
    return stats


if __name__ == "__main__":
    main()
