"""Prepare audio data for Bridle: resample every clip to 16 kHz mono, write AudioMAE JSON
manifests, the class-label CSV and AST-style per-clip sampling weights (``*_weight.csv``).

Sources (sub-commands):

  folder    every clip under a folder; ``--labels-from-subdirs`` makes the first directory
            level the class; ``--eval-fraction`` holds out a deterministic part as eval.json
  esc50     an ESC-50 checkout (meta/esc50.csv + audio/); the output is again an ESC-50 root
            (for the "esc50" dataset) plus per-fold manifests esc50_fold{k}_{train,eval}.json
  audioset  AudioSet segment CSVs (YTID, start, end, "labels") + a folder of downloaded clips
            (named <YTID>*, Y<YTID>*) + class_labels_indices.csv; one manifest per segment CSV

``--shards DIR`` also writes every manifest's clips as WebDataset shards (FLAC + JSON labels,
``DIR/<manifest name>/index.json``) for the core "shards" dataset (see tools/make_shards.py).

Unreadable clips are listed in ``<output>/failed.txt`` and skipped; the run never stops on them.
Already converted clips are kept (re-runs resume) unless ``--overwrite``.

Run as ``python -m bridle_audio.prepare`` or ``python tools/prepare_audio.py`` (the same).

Examples:
  python tools/prepare_audio.py folder --input ~/clips --output data/clips --labels-from-subdirs \
      --eval-fraction 0.2
  python tools/prepare_audio.py esc50 --input ESC-50-master --output data/esc50 --workers 8
  python tools/prepare_audio.py audioset --segments balanced_train_segments.csv \
      unbalanced_train_segments.csv eval_segments.csv --clips raw_clips/ \
      --label-csv class_labels_indices.csv --output data/audioset --workers 16 \
      --merge train_all=balanced_train_segments,unbalanced_train_segments
"""

import argparse
import csv
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from bridle.data.weighted_sampler import label_frequency_weights

from .convert import OUTPUT_FORMATS, ConvertJob, convert_clip, init_worker
from .manifest import (
    DEFAULT_EXTENSIONS,
    esc50_classes,
    list_audio_files,
    read_esc50_meta,
    read_label_csv,
    split_labels,
    write_esc50_meta,
    write_label_csv,
    write_manifest,
    write_weights,
)

LABEL_CSV_NAME = "class_labels_indices.csv"


def run_jobs(jobs: Sequence[ConvertJob], workers: int, desc: str) -> Dict[str, Optional[str]]:
    """dst -> error (None when converted), with a tqdm progress bar."""
    results: Dict[str, Optional[str]] = {}
    if workers <= 1:
        for dst, err in tqdm(map(convert_clip, jobs), total=len(jobs), desc=desc, unit="clip"):
            results[dst] = err
        return results
    with ProcessPoolExecutor(max_workers=workers, initializer=init_worker) as pool:
        it = pool.map(convert_clip, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8))))
        for dst, err in tqdm(it, total=len(jobs), desc=desc, unit="clip"):
            results[dst] = err
    return results


class Preparer:
    """Shared bookkeeping: output paths, failures, manifests and weights."""

    def __init__(self, args) -> None:
        self.out = os.path.abspath(args.output)
        self.sample_rate = args.sample_rate
        self.fmt = args.format
        self.workers = args.workers
        self.overwrite = args.overwrite
        self.absolute = args.absolute_paths
        self.shards = os.path.abspath(args.shards) if getattr(args, "shards", "") else ""
        self.shard_size = int(getattr(args, "shard_size", 1000))
        self.failed: List[Tuple[str, str]] = []
        os.makedirs(self.out, exist_ok=True)

    def audio_dst(self, rel: str) -> str:
        return os.path.join(self.out, "audio", os.path.splitext(rel)[0] + "." + self.fmt)

    def manifest_path(self, dst: str) -> str:
        return dst if self.absolute else os.path.relpath(dst, self.out)

    def convert(self, pairs: Sequence[Tuple[str, str]], desc: str) -> Dict[str, Optional[str]]:
        """Convert (src, dst) pairs; failures are recorded. Returns dst -> error."""
        jobs = [(s, d, self.sample_rate, self.overwrite) for s, d in pairs]
        results = run_jobs(jobs, self.workers, desc)
        src_of = dict((d, s) for s, d in pairs)
        self.failed.extend((src_of[d], err) for d, err in results.items() if err is not None)
        return results

    def write_split(self, name: str, entries: List[Dict[str, str]], mids: Optional[List[str]]) -> None:
        """``<name>.json`` and, when there are labels, ``<name>_weight.csv``."""
        write_manifest(os.path.join(self.out, f"{name}.json"), entries)
        if mids is not None and entries:
            index_of = {m: i for i, m in enumerate(mids)}
            labels = [[index_of[m] for m in split_labels(e["labels"]) if m in index_of] for e in entries]
            weights = label_frequency_weights(labels, len(mids)).numpy()
            write_weights(os.path.join(self.out, f"{name}_weight.csv"), weights)
        if self.shards and entries:
            self.write_shards(name, entries, mids)

    def write_shards(self, name: str, entries: List[Dict[str, str]], mids: Optional[List[str]]) -> None:
        """``--shards DIR``: the split's clips as WebDataset shards in ``DIR/<name>/`` (FLAC)."""
        from bridle.data.shards import write_jobs

        from .shards import audio_entry_jobs, encode_audio_job

        jobs, meta = audio_entry_jobs(entries, self.out, mids, os.path.join(self.out, f"{name}.json"), strict=False)
        write_jobs(
            jobs,
            encode_audio_job,
            os.path.join(self.shards, name),
            "audio",
            meta,
            self.shard_size,
            1 << 30,
            self.workers,
        )

    def finish(self, num_written: int, extra: str = "") -> None:
        failed_txt = os.path.join(self.out, "failed.txt")
        with open(failed_txt, "w", encoding="utf-8") as f:
            for src, err in self.failed:
                f.write(f"{src}\t{err}\n")
        print(
            f"prepare_audio: {num_written} clips ready in {self.out}, {len(self.failed)} unreadable "
            f"(skipped, listed in {failed_txt}){extra}."
        )


# ---------------------------------------------------------------------------- sources
def prepare_folder(args) -> None:
    p = Preparer(args)
    root = os.path.abspath(args.input)
    files = list_audio_files(root, args.extensions)
    if not files:
        sys.exit(f"prepare_audio: no audio files with extensions {args.extensions} under '{root}'.")
    rels = [os.path.relpath(f, root) for f in files]
    pairs = [(f, p.audio_dst(r)) for f, r in zip(files, rels)]
    results = p.convert(pairs, "folder")

    mids: Optional[List[str]] = None
    if args.labels_from_subdirs:
        mids = sorted({r.split(os.sep)[0] for r in rels if os.sep in r})
        write_label_csv(os.path.join(p.out, LABEL_CSV_NAME), mids, mids)
    splits: Dict[str, List[Dict[str, str]]] = {"train": [], "eval": []}
    for (src, dst), rel in zip(pairs, rels):
        if results[dst] is not None:
            continue
        label = rel.split(os.sep)[0] if (mids is not None and os.sep in rel) else ""
        # Deterministic hold-out: the same file always lands in the same split.
        h = int(hashlib.sha1(rel.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
        split = "eval" if h < args.eval_fraction else "train"
        splits[split].append({"wav": p.manifest_path(dst), "labels": label})
    for name, entries in splits.items():
        if entries or name == "train":
            p.write_split(name, entries, mids)
    p.finish(sum(len(e) for e in splits.values()))


def prepare_esc50(args) -> None:
    p = Preparer(args)
    root = os.path.abspath(args.input)
    rows = read_esc50_meta(root)
    pairs = [(os.path.join(root, "audio", str(r["filename"])), p.audio_dst(str(r["filename"]))) for r in rows]
    results = p.convert(pairs, "esc50")
    ok_rows = []
    for r, (_, dst) in zip(rows, pairs):
        if results[dst] is None:
            ok_rows.append({**r, "filename": os.path.basename(dst)})
    if not ok_rows:
        p.finish(0)
        sys.exit("prepare_audio: no ESC-50 clip could be converted.")
    write_esc50_meta(p.out, ok_rows)
    names = esc50_classes(rows)
    write_label_csv(os.path.join(p.out, LABEL_CSV_NAME), names, names)
    for fold in range(1, 6):
        for name, keep in (("train", lambda r: r["fold"] != fold), ("eval", lambda r: r["fold"] == fold)):
            entries = [
                {"wav": p.manifest_path(os.path.join(p.out, "audio", r["filename"])), "labels": names[r["target"]]}
                for r in ok_rows
                if keep(r)
            ]
            p.write_split(f"esc50_fold{fold}_{name}", entries, names)
    p.finish(len(ok_rows))


def read_segments_csv(path: str) -> List[Tuple[str, str]]:
    """(YTID, comma-separated labels) of an AudioSet segments CSV (``#`` lines are comments)."""
    out = []
    with open(path, "r", encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 4:
                raise ValueError(
                    f"AudioSet segments CSV '{path}' line {line_no}: expected 'YTID, start, end, \"labels\"'; "
                    f"got {row}."
                )
            out.append((row[0].strip(), ",".join(row[3:]).strip().strip('"')))
    return out


def index_clips(files: Sequence[str]) -> Dict[str, str]:
    """YTID -> clip path for files named ``<YTID>...`` or ``Y<YTID>...`` (YTIDs have 11 chars)."""
    exact: Dict[str, str] = {}
    derived: Dict[str, str] = {}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        exact.setdefault(stem, f)
        if stem.startswith("Y") and len(stem) >= 12:
            derived.setdefault(stem[1:12], f)
        if len(stem) >= 11:
            derived.setdefault(stem[:11], f)
    return {**derived, **exact}


def prepare_audioset(args) -> None:
    p = Preparer(args)
    mids, names = read_label_csv(args.label_csv)
    known = set(mids)
    write_label_csv(os.path.join(p.out, LABEL_CSV_NAME), mids, names)
    clips = index_clips(list_audio_files(os.path.abspath(args.clips), args.extensions))
    per_csv: Dict[str, List[Tuple[str, str]]] = {}
    pairs: Dict[str, str] = {}  # dst -> src
    missing: List[str] = []
    unknown = 0
    for seg_csv in args.segments:
        name = os.path.splitext(os.path.basename(seg_csv))[0]
        rows = []
        for ytid, labels in read_segments_csv(seg_csv):
            src = clips.get(ytid)
            if src is None:
                missing.append(f"{name}\t{ytid}")
                continue
            ids = split_labels(labels)
            unknown += sum(m not in known for m in ids)
            dst = p.audio_dst(ytid)
            pairs.setdefault(dst, src)
            rows.append((dst, ",".join(m for m in ids if m in known)))
        per_csv[name] = rows
    results = p.convert([(s, d) for d, s in pairs.items()], "audioset")
    total = 0
    written: Dict[str, List[Dict[str, str]]] = {}
    for name, rows in per_csv.items():
        entries = [{"wav": p.manifest_path(d), "labels": lab} for d, lab in rows if results[d] is None]
        p.write_split(name, entries, mids)
        written[name] = entries
        total += len(entries)
    for merged, parts in args.merge:
        unknown_parts = [q for q in parts if q not in written]
        if unknown_parts:
            sys.exit(f"prepare_audio: --merge {merged}: no segment CSV named {unknown_parts}; have {sorted(written)}.")
        p.write_split(merged, [e for q in parts for e in written[q]], mids)
    with open(os.path.join(p.out, "missing.txt"), "w", encoding="utf-8") as f:
        f.writelines(m + "\n" for m in missing)
    extra = f", {len(missing)} segments without a clip (missing.txt)"
    if unknown:
        extra += f", {unknown} labels not in '{args.label_csv}' dropped"
    p.finish(total, extra)


def _merge_spec(text: str) -> Tuple[str, List[str]]:
    name, sep, parts = text.partition("=")
    if not sep or not name or not parts:
        raise argparse.ArgumentTypeError(f"expected NAME=CSV_STEM1,CSV_STEM2; got '{text}'")
    return name, [q.strip() for q in parts.split(",") if q.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", required=True, help="output folder (audio/, manifests, CSVs, failed.txt)")
    common.add_argument("--sample-rate", type=int, default=16000, help="output sample rate (Hz)")
    common.add_argument("--format", choices=OUTPUT_FORMATS, default="wav", help="output audio format")
    common.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes (1 = serial)")
    common.add_argument("--overwrite", action="store_true", help="convert again clips that already exist")
    common.add_argument(
        "--absolute-paths",
        action="store_true",
        help="absolute 'wav' paths in manifests (default: relative to the output folder)",
    )
    common.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS), help="input extensions")
    common.add_argument(
        "--shards",
        default="",
        metavar="DIR",
        help="also write each manifest's clips as WebDataset shards (FLAC) to DIR/<name>/ "
        "for the 'shards' dataset (tools/make_shards.py)",
    )
    common.add_argument("--shard-size", type=int, default=1000, help="clips per shard (--shards)")

    f = sub.add_parser("folder", parents=[common], help="a folder of clips")
    f.add_argument("--input", required=True, help="folder scanned recursively")
    f.add_argument("--labels-from-subdirs", action="store_true", help="class = first sub-directory")
    f.add_argument("--eval-fraction", type=float, default=0.0, help="fraction held out as eval.json")
    f.set_defaults(fn=prepare_folder)

    e = sub.add_parser("esc50", parents=[common], help="an ESC-50 checkout")
    e.add_argument("--input", required=True, help="ESC-50 root with meta/esc50.csv and audio/")
    e.set_defaults(fn=prepare_esc50)

    a = sub.add_parser("audioset", parents=[common], help="AudioSet segment CSVs + downloaded clips")
    a.add_argument("--segments", nargs="+", required=True, help="segment CSVs (one manifest each)")
    a.add_argument("--clips", required=True, help="folder of downloaded clips named by YTID")
    a.add_argument("--label-csv", required=True, help="class_labels_indices.csv (index,mid,display_name)")
    a.add_argument(
        "--merge",
        nargs="+",
        default=[],
        type=_merge_spec,
        metavar="NAME=CSV1,CSV2",
        help="also write manifest NAME.json (+ weights) joining the manifests of these "
        "segment CSVs (by file stem), e.g. train_all=balanced_train_segments,"
        "unbalanced_train_segments for AS-2M",
    )
    a.set_defaults(fn=prepare_audioset)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "eval_fraction", 0.0) and not 0.0 <= args.eval_fraction < 1.0:
        sys.exit(f"prepare_audio: --eval-fraction must be in [0, 1); got {args.eval_fraction}.")
    args.fn(args)


if __name__ == "__main__":
    main()
