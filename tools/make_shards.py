#!/usr/bin/env python
"""Write WebDataset tar shards (+ ``index.json``) for the core "shards" dataset.

Sources (one per run; run once per split, into its own folder):

  --manifest M.json [--label-csv L.csv] [--root R]   audio clips of an AudioMAE manifest, kept
        compressed as FLAC (lossless re-encoding of PCM files; ``--audio-format keep`` stores the
        files' own bytes), labels as JSON class indices; decoder "audio"
  --image-folder DIR    ImageFolder layout DIR/<class>/<file>: the image files' own bytes (JPEG
        stays JPEG), class index (sorted class folders, as torchvision) as JSON; decoder "image"
  --video-csv K.csv [--root R]    Kinetics-style "path label" CSV: the video files' bytes;
        decoder "video"
  --dataset NAME --config-file CFG [--split S] [--mode M] [KEY VALUE ...]   the items of any
        registered DATASET (tensors as .npy, the rest as JSON) exactly as the dataset returns
        them in mode M (default eval, so no random augmentation is frozen in); decoder "tensors"

Examples:
  python tools/make_shards.py --manifest data/audioset/train_all.json \\
      --label-csv data/audioset/class_labels_indices.csv --out shards/as2m_train --num-workers 16
  python tools/make_shards.py --image-folder imagenet/train --out shards/in1k_train --shard-size 1250
  python tools/make_shards.py --video-csv k400/train.csv --out shards/k400_train --shard-size 200
  python tools/make_shards.py --dataset digits --config-file configs/image/tiny_pretrain.yaml \\
      --split train --out shards/digits

Then: ``DATASETS.TRAIN shards DATASETS.SHARDS.TRAIN_INDEX shards/as2m_train/index.json``.
A file that cannot be read is skipped and listed in ``<out>/skipped.txt`` (its index stays
unused, so the keys still name the source entries).
"""
import argparse
import io
import json
import os
import sys
from multiprocessing import Pool
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bridle.data.shards import ShardSink, encode_tensor_item  # noqa: E402

LOSSLESS_FLAC = {"PCM_S8": "PCM_S8", "PCM_U8": "PCM_S8", "PCM_16": "PCM_16", "PCM_24": "PCM_24"}

# A job is (index, path, label-json-dict); an encoder returns {ext: bytes} or raises.
Job = Tuple[int, str, dict]


# ----------------------------------------------------------------------------- encoders
def encode_audio_file(path: str, audio_format: str = "flac") -> Tuple[str, bytes]:
    """(extension, bytes) of a clip: FLAC files as they are; other formats soundfile reads are
    re-encoded as FLAC (PCM_16/24 bit-exact; float or 32-bit PCM as 24-bit FLAC)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    with open(path, "rb") as f:
        raw = f.read()
    if audio_format == "keep" or ext == "flac":
        return ext, raw
    import soundfile as sf

    info = sf.info(io.BytesIO(raw))
    subtype = LOSSLESS_FLAC.get(info.subtype, "PCM_24")
    dtype = "int16" if subtype in ("PCM_16", "PCM_S8") else "int32"
    data, sr = sf.read(io.BytesIO(raw), dtype=dtype, always_2d=True)
    if data.shape[0] == 0:
        raise ValueError(f"'{path}' has no samples")
    out = io.BytesIO()
    sf.write(out, data, sr, format="FLAC", subtype=subtype)
    return "flac", out.getvalue()


def _file_bytes(path: str) -> Tuple[str, bytes]:
    with open(path, "rb") as f:
        return os.path.splitext(path)[1].lower().lstrip("."), f.read()


class _Encode:
    """Picklable job runner for the worker pool: job -> (index, fields or None, error)."""

    def __init__(self, kind: str, audio_format: str = "flac") -> None:
        self.kind, self.audio_format = kind, audio_format

    def __call__(self, job: Job):
        index, path, meta = job
        try:
            if self.kind == "audio":
                ext, data = encode_audio_file(path, self.audio_format)
            else:
                ext, data = _file_bytes(path)
                if self.kind == "image":
                    from PIL import Image

                    with Image.open(io.BytesIO(data)) as img:
                        img.verify()  # a file PIL cannot read is skipped here, not in training
            fields = {ext: data, "json": json.dumps({"index": index, **meta}).encode("utf-8")}
            return index, fields, None
        except Exception as e:  # noqa: BLE001  (any unreadable file is skipped and reported)
            return index, None, f"{type(e).__name__}: {e}"


def write_jobs(jobs: Sequence[Job], encode: Callable, out: str, decoder: str, meta: dict,
               shard_size: int, max_bytes: int, workers: int, paths: Optional[List[str]] = None) -> str:
    sink = ShardSink(out, decoder=decoder, meta=meta, max_count=shard_size, max_bytes=max_bytes)
    skipped: List[Tuple[str, str]] = []
    results: Iterable = map(encode, jobs) if workers <= 1 else None
    pool = None
    if results is None:
        pool = Pool(workers)
        results = pool.imap(encode, jobs, chunksize=8)
    try:
        for n, (index, fields, err) in enumerate(results):
            if fields is None:
                skipped.append((jobs[n][1], err))
            else:
                sink.write(fields)
            if (n + 1) % 10000 == 0:
                print(f"make_shards: {n + 1}/{len(jobs)} samples", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    with open(os.path.join(out, "skipped.txt"), "w", encoding="utf-8") as f:
        for path, err in skipped:
            f.write(f"{path}\t{err}\n")
    index = sink.close()
    print(f"make_shards: {sink.num_samples} samples in {len(sink.shards)} shards, {len(skipped)} unreadable "
          f"files skipped (listed in {os.path.join(out, 'skipped.txt')}); index {index}", flush=True)
    return index


# ----------------------------------------------------------------------------- sources
def audio_manifest_jobs(manifest: str, label_csv: str = "", root: str = "") -> Tuple[List[Job], dict]:
    from bridle_audio.manifest import read_label_csv, read_manifest

    entries = read_manifest(manifest)
    if not entries:
        raise SystemExit(f"make_shards: manifest '{manifest}' has no entries.")
    mids = read_label_csv(label_csv)[0] if label_csv else None
    return audio_entry_jobs(entries, root or os.path.dirname(os.path.abspath(manifest)), mids,
                            os.path.abspath(manifest), label_csv)


def audio_entry_jobs(entries, root: str, mids: Optional[List[str]], source: str = "",
                     label_csv: str = "", strict: bool = True) -> Tuple[List[Job], dict]:
    """Jobs of manifest entries ``{"wav", "labels"}``; ``mids`` (class ids by index) or None.
    A label id not in ``mids`` is an error (``strict``) or dropped."""
    from bridle_audio.manifest import split_labels

    index_of, meta = None, {"multi_label": True, "num_classes": 0, "source": source}
    if mids is not None:
        index_of = {m: i for i, m in enumerate(mids)}
        meta["num_classes"] = len(mids)
    jobs: List[Job] = []
    for i, e in enumerate(entries):
        path = e["wav"] if os.path.isabs(e["wav"]) else os.path.join(root, e["wav"])
        labels: dict = {}
        if index_of is not None:
            ids = split_labels(e.get("labels", ""))
            unknown = [m for m in ids if m not in index_of]
            if unknown and strict:
                raise SystemExit(f"make_shards: {source or 'manifest'} entry {i} ('{e['wav']}') has labels "
                                 f"{unknown} that are not in the label CSV {label_csv!r}.")
            labels = {"labels": sorted({index_of[m] for m in ids if m in index_of})}
        jobs.append((i, path, labels))
    return jobs, meta


def image_folder_jobs(root: str) -> Tuple[List[Job], dict]:
    if not os.path.isdir(root):
        raise SystemExit(f"make_shards: --image-folder '{root}' is not a directory.")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise SystemExit(f"make_shards: --image-folder '{root}' has no class sub-directories.")
    exts = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")
    jobs: List[Job] = []
    for c, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for fn in sorted(files):
                if fn.lower().endswith(exts):
                    jobs.append((len(jobs), os.path.join(dirpath, fn), {"label": c}))
    return jobs, {"num_classes": len(classes), "classes": classes, "source": os.path.abspath(root)}


def video_csv_jobs(csv_path: str, root: str = "") -> Tuple[List[Job], dict]:
    from bridle_video.kinetics import read_video_csv

    paths, labels = read_video_csv(csv_path, root)
    jobs = [(i, p, {"label": int(y)}) for i, (p, y) in enumerate(zip(paths, labels))]
    return jobs, {"num_classes": max(labels) + 1, "source": os.path.abspath(csv_path)}


def _identity(x):
    return x


def shard_dataset(args) -> str:
    """Items of a registered DATASET, as the dataset returns them."""
    import torch
    from torch.utils.data import DataLoader

    from bridle.config import get_cfg
    from bridle.data.build import build_dataset

    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    ds = build_dataset(cfg, args.dataset, args.split, args.mode)
    loader = DataLoader(ds, batch_size=None, num_workers=args.num_workers, collate_fn=_identity)
    sink = ShardSink(args.out, decoder="tensors", max_count=args.shard_size, max_bytes=args.max_shard_mb << 20,
                     meta={"num_classes": getattr(ds, "num_classes", None) or 0, "source": args.dataset,
                           "split": args.split, "mode": args.mode})
    skipped = 0
    with torch.no_grad():
        for item in loader:
            if item is None:
                skipped += 1
                continue
            sink.write(encode_tensor_item(item))
    index = sink.close()
    print(f"make_shards: {sink.num_samples} items of '{args.dataset}' ({args.split}, {args.mode}) in "
          f"{len(sink.shards)} shards, {skipped} unreadable items skipped; index {index}", flush=True)
    return index


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="AudioMAE JSON manifest (audio)")
    src.add_argument("--image-folder", help="ImageFolder root of one split: DIR/<class>/<file>")
    src.add_argument("--video-csv", help="Kinetics-style 'path label' CSV")
    src.add_argument("--dataset", help="a registered DATASET entry (items as tensors)")
    p.add_argument("--out", required=True, help="output folder (shards + index.json)")
    p.add_argument("--label-csv", default="", help="class-label CSV index,mid,display_name (--manifest)")
    p.add_argument("--root", default="", help="folder relative paths are resolved against (--manifest, --video-csv)")
    p.add_argument("--audio-format", choices=["flac", "keep"], default="flac",
                   help="flac: store clips as FLAC; keep: the files' own bytes")
    p.add_argument("--config-file", default="", help="config of --dataset")
    p.add_argument("--split", default="train", help="split of --dataset")
    p.add_argument("--mode", default="eval", help="mode of --dataset (eval: no random augmentation)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--max-shard-mb", type=int, default=1024, help="MiB per shard at most")
    p.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1), help="reading processes")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (--dataset)")
    args = p.parse_args(argv)
    if args.shard_size <= 0 or args.max_shard_mb <= 0:
        p.error("--shard-size and --max-shard-mb must be > 0")
    if args.opts and not args.dataset:
        p.error(f"KEY VALUE overrides {args.opts} only apply to --dataset")
    return args


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.dataset:
        return shard_dataset(args)
    if args.manifest:
        jobs, meta = audio_manifest_jobs(args.manifest, args.label_csv, args.root)
        kind = decoder = "audio"
    elif args.image_folder:
        jobs, meta = image_folder_jobs(args.image_folder)
        kind = decoder = "image"
    else:
        jobs, meta = video_csv_jobs(args.video_csv, args.root)
        kind = decoder = "video"
    return write_jobs(jobs, _Encode(kind, args.audio_format), args.out, decoder, meta, args.shard_size,
                      args.max_shard_mb << 20, args.num_workers)


if __name__ == "__main__":
    main()
