"""The audio shard format: the "audio_manifest" SHARD_SOURCE writes it (``tools/make_shards.py
--manifest``: an AudioMAE manifest's clips as FLAC + JSON labels) and the "audio" SAMPLE_DECODER
reads one sample back as the same item an :class:`~bridle_audio.dataset.AudioClipDataset` gives
for the clip's file.

Sample fields (written by ``tools/make_shards.py`` / ``tools/prepare_audio.py --shards``):
``flac`` (or ``wav`` / ``ogg`` / ``mp3`` ... any format soundfile reads) and ``json`` =
``{"index": int, "labels": [class indices]}`` (multi-label) or ``{"index": int, "label": int}``;
the shard index's ``meta`` gives ``num_classes`` and ``multi_label``.

The pipeline is the clip dataset's: decode -> mono -> 16 kHz -> [random window of a long clip]
-> [roll + gain] -> [mixup] -> kaldi fbank -> pad / crop -> [SpecAugment] -> normalise. In a
stream there is no random access, so waveform mixup ("finetune") mixes with the previous sample
of the same loader slot's stream (none when that one is unreadable); a resumed stream hands the
decoder that sample first (``prime``, bridle.protocols.PrimedDecoder), so it mixes as before.
"""

import functools
import io
import math
import os
from typing import Dict, List, Optional, Tuple

import torch

from bridle.data.robust import check_mode
from bridle.data.shards import Job, ShardSource, file_fields, sample_payload
from bridle.registry import SAMPLE_DECODER, SHARD_SOURCE

from .augment import mix_waveforms, roll_and_gain, sample_beta
from .dataset import ClipPipeline
from .features import AudioDecodeError, compute_fbank, load_waveform

#: Field names (file extensions) of the clip in a sample, in the order they are looked for.
AUDIO_FIELDS = ("flac", "wav", "ogg", "oga", "opus", "mp3", "aiff", "aif")


class AudioSampleDecoder(ClipPipeline):
    def __init__(self, cfg, mode: str, meta: dict) -> None:
        check_mode(mode, "SAMPLE_DECODER 'audio'")
        # the clip dataset's settings; with FBANK_ON_DEVICE the "shards" dataset exposes
        # device_transform, which the trainers apply to whole batches on the device
        self._init_pipeline(cfg, mode)
        self.num_classes = int(meta.get("num_classes", 0) or 0)
        self.multi_label = bool(meta.get("multi_label", False))
        self.soft_labels = self.num_classes > 0 and (self.multi_label or self.mixup_prob > 0)
        self._previous: Optional[Dict[str, bytes]] = None  # the stream's previous raw sample: the mixup partner

    def prime(self, sample: Optional[Dict[str, bytes]]) -> None:
        """The previous sample of the stream where this decoder did not see it (a resumed stream's
        first sample, a sample missing from its shard): the next sample's mixup partner."""
        self._previous = sample if self.mixup_prob > 0 else None

    # ------------------------------------------------------------------ pieces
    def _labels(self, meta: dict) -> Optional[List[int]]:
        if "labels" in meta:
            return [int(c) for c in meta["labels"]]
        if "label" in meta:
            return [int(meta["label"])]
        return None

    def _label_tensor(self, idx: List[int], key: str) -> torch.Tensor:
        if self.num_classes and any(not 0 <= c < self.num_classes for c in idx):
            raise ValueError(f"sample {key}: class index outside [0, {self.num_classes})")
        if not self.soft_labels:
            if len(idx) != 1:
                raise ValueError(f"sample {key}: {len(idx)} labels for a single-label decoder")
            return torch.tensor(idx[0], dtype=torch.long)
        y = torch.zeros(self.num_classes, dtype=torch.float32)
        y[idx] = 1.0
        return y

    def _waveform(self, data: bytes, key: str) -> torch.Tensor:
        try:
            wav = None
            if self.random_crop:
                import soundfile as sf

                info = sf.info(io.BytesIO(data))
                sr, frames = int(info.samplerate), int(info.frames)
                need = math.ceil(self.params.samples_for_frames(self.target_length) * sr / self.params.sample_rate)
                need += sr // 10
                if frames > 2 * need:
                    start = int(torch.randint(frames - need + 1, ()))
                    wav = load_waveform(io.BytesIO(data), self.params.sample_rate, start=start, num_frames=need)
            if wav is None:
                wav = load_waveform(io.BytesIO(data), self.params.sample_rate)
        except AudioDecodeError as e:
            raise AudioDecodeError(f"sample {key}: {e}") from None
        except RuntimeError as e:  # soundfile errors on unreadable bytes
            raise AudioDecodeError(f"sample {key}: cannot decode audio: {e}") from None
        if self.roll or self.gain:
            wav = roll_and_gain(wav - wav.mean(), self.roll, self.gain, self.gain_beta)
        return wav

    # ------------------------------------------------------------------ one sample
    def __call__(self, sample: Dict[str, bytes]) -> dict:
        partner = self._previous
        self.prime(sample)  # the next sample's partner, whether or not this one decodes
        key, ext, meta = sample_payload(sample, AUDIO_FIELDS, "audio", AudioDecodeError)
        idx = self._labels(meta) if self.num_classes else None
        mix = self.mixup_prob > 0 and float(torch.rand(())) < self.mixup_prob and partner is not None
        label = self._label_tensor(idx, key) if idx is not None else None
        wav = self._waveform(sample[ext], key)
        if mix:
            try:  # an unreadable partner (skipped and counted as its own item): no mixup
                _, other_ext, other_meta = sample_payload(partner, AUDIO_FIELDS, "audio", AudioDecodeError)
                other_idx = self._labels(other_meta) if self.num_classes else None
                other_label = (
                    self._label_tensor(other_idx, key) if label is not None and other_idx is not None else None
                )
                other = self._waveform(partner[other_ext], f"{key} (mixup partner)")
            except (AudioDecodeError, ValueError):
                other = None
            if other is not None:
                lam = sample_beta(self.mixup_alpha)
                wav = mix_waveforms(wav, other, lam)
                if other_label is not None:
                    label = lam * label + (1.0 - lam) * other_label
        index = torch.tensor(int(meta.get("index", -1)), dtype=torch.long)
        if self.device_transform is not None:
            return self._waveform_item(wav, index, label)
        return self._fbank_item(compute_fbank(wav, self.params), index, label)


@SAMPLE_DECODER.register(name="audio")
def build_audio_decoder(cfg, mode: str, meta: dict) -> AudioSampleDecoder:
    return AudioSampleDecoder(cfg, mode, meta)


# ----------------------------------------------------------------------------- writing
#: soundfile subtypes FLAC stores bit-exactly (8-bit unsigned PCM becomes signed, same values).
LOSSLESS_FLAC = {"PCM_S8": "PCM_S8", "PCM_U8": "PCM_S8", "PCM_16": "PCM_16", "PCM_24": "PCM_24"}


def encode_audio_file(path: str, audio_format: str = "flac") -> Tuple[str, bytes]:
    """(extension, bytes) of a clip: FLAC files as they are; other formats soundfile reads are
    re-encoded as FLAC (PCM_16/24 bit-exact; float or 32-bit PCM as 24-bit FLAC).
    ``audio_format="keep"``: the file's own bytes."""
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


def encode_audio_job(job: Job, audio_format: str = "flac") -> Dict[str, bytes]:
    """The sample fields of one clip job ``(index, path, labels)`` (raises if unreadable)."""
    index, path, labels = job
    ext, data = encode_audio_file(path, audio_format)
    return file_fields(index, ext, data, labels)


def audio_manifest_jobs(manifest: str, label_csv: str = "", root: str = "") -> Tuple[List[Job], dict]:
    """Jobs and index meta of an AudioMAE manifest; relative paths against ``root`` (default:
    the manifest's folder), labels as class indices of ``label_csv`` (none without one)."""
    from .manifest import read_label_csv, read_manifest

    entries = read_manifest(manifest)
    if not entries:
        raise SystemExit(f"make_shards: manifest '{manifest}' has no entries.")
    mids = read_label_csv(label_csv)[0] if label_csv else None
    return audio_entry_jobs(
        entries, root or os.path.dirname(os.path.abspath(manifest)), mids, os.path.abspath(manifest), label_csv
    )


def audio_entry_jobs(
    entries, root: str, mids: Optional[List[str]], source: str = "", label_csv: str = "", strict: bool = True
) -> Tuple[List[Job], dict]:
    """Jobs of manifest entries ``{"wav", "labels"}``; ``mids`` (class ids by index) or None.
    A label id not in ``mids`` is an error (``strict``) or dropped."""
    from .manifest import split_labels

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
                raise SystemExit(
                    f"make_shards: {source or 'manifest'} entry {i} ('{e['wav']}') has labels "
                    f"{unknown} that are not in the label CSV {label_csv!r}."
                )
            labels = {"labels": sorted({index_of[m] for m in ids if m in index_of})}
        jobs.append((i, path, labels))
    return jobs, meta


@SHARD_SOURCE.register(name="audio_manifest")
class AudioManifestSource(ShardSource):
    flag = "--manifest"
    help = "AudioMAE JSON manifest (audio)"
    doc = (
        "  --manifest M.json [--label-csv L.csv] [--root R]   audio clips of an AudioMAE manifest, kept\n"
        "        compressed as FLAC (lossless re-encoding of PCM files; ``--audio-format keep`` stores the\n"
        '        files\' own bytes), labels as JSON class indices; decoder "audio"'
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--label-csv", default="", help="class-label CSV index,mid,display_name (--manifest)")
        parser.add_argument(
            "--audio-format",
            choices=["flac", "keep"],
            default="flac",
            help="flac: store clips as FLAC; keep: the files' own bytes",
        )

    def jobs(self, args):
        jobs, meta = audio_manifest_jobs(args.manifest, args.label_csv, args.root)
        return jobs, meta, "audio"

    def encoder(self, args):
        return functools.partial(encode_audio_job, audio_format=args.audio_format)
