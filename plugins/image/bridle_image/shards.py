"""The image shard format: the "image_folder" SHARD_SOURCE writes it (``tools/make_shards.py
--image-folder``: the image files' own bytes + JSON class index) and the "image" SAMPLE_DECODER
reads one sample (the image file's bytes, JPEG as a rule, + JSON label) back as the same item
``image_folder`` gives for the file: PIL RGB -> the mode's transform (``build_image_transform``)
-> ``{"input": float [3, H, W], "label": long}``.

Sample fields (written by ``tools/make_shards.py --image-folder``): ``jpg`` / ``jpeg`` / ``png`` /
``webp`` / ``bmp`` and ``json`` = ``{"label": int, "index": int}``.
"""

import io
import os
from typing import Dict, List, Tuple

import torch
from PIL import Image

from bridle.data.robust import check_mode
from bridle.data.shards import Job, ShardSource, file_fields, sample_payload
from bridle.registry import SAMPLE_DECODER, SHARD_SOURCE

from .transforms import build_image_transform

#: Field names (file extensions) of the image in a sample, in the order they are looked for.
IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff")


def decode_rgb(data: bytes, key: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        return img.convert("RGB")  # decodes fully: a truncated image fails here
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"sample {key}: cannot decode image: {type(e).__name__}: {e}") from None


class ImageSampleDecoder:
    def __init__(self, cfg, mode: str, meta: dict) -> None:
        check_mode(mode, "SAMPLE_DECODER 'image'")
        self.transform = build_image_transform(cfg, mode)
        self.num_classes = int(meta.get("num_classes", 0) or 0)

    def __call__(self, sample: Dict[str, bytes]) -> dict:
        key, ext, meta = sample_payload(sample, IMAGE_FIELDS, "image")
        item = {"input": self.transform(decode_rgb(sample[ext], key))}
        if "label" in meta:
            label = int(meta["label"])
            if self.num_classes and not 0 <= label < self.num_classes:
                raise ValueError(f"sample {key}: label {label} outside [0, {self.num_classes})")
            item["label"] = torch.tensor(label, dtype=torch.long)
        return item


@SAMPLE_DECODER.register(name="image")
def build_image_decoder(cfg, mode: str, meta: dict) -> ImageSampleDecoder:
    return ImageSampleDecoder(cfg, mode, meta)


# ----------------------------------------------------------------------------- writing
#: File name endings of the images an ImageFolder source takes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


def image_folder_jobs(root: str) -> Tuple[List[Job], dict]:
    """Jobs and index meta of an ImageFolder layout ``root/<class>/<file>``: class indices of the
    sorted class folders (as torchvision's ImageFolder)."""
    if not os.path.isdir(root):
        raise SystemExit(f"make_shards: --image-folder '{root}' is not a directory.")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise SystemExit(f"make_shards: --image-folder '{root}' has no class sub-directories.")
    jobs: List[Job] = []
    for c, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for fn in sorted(files):
                if fn.lower().endswith(IMAGE_EXTENSIONS):
                    jobs.append((len(jobs), os.path.join(dirpath, fn), {"label": c}))
    return jobs, {"num_classes": len(classes), "classes": classes, "source": os.path.abspath(root)}


def encode_image_job(job: Job) -> Dict[str, bytes]:
    """The sample fields of one image job: the file's own bytes, after checking that PIL can
    read it (a file PIL cannot read is skipped here, not in training)."""
    index, path, labels = job
    with open(path, "rb") as f:
        data = f.read()
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    return file_fields(index, os.path.splitext(path)[1].lower().lstrip("."), data, labels)


@SHARD_SOURCE.register(name="image_folder")
class ImageFolderSource(ShardSource):
    flag = "--image-folder"
    help = "ImageFolder root of one split: DIR/<class>/<file>"
    doc = (
        "  --image-folder DIR    ImageFolder layout DIR/<class>/<file>: the image files' own bytes (JPEG\n"
        '        stays JPEG), class index (sorted class folders, as torchvision) as JSON; decoder "image"'
    )

    def jobs(self, args):
        jobs, meta = image_folder_jobs(args.image_folder)
        return jobs, meta, "image"

    def encoder(self, args):
        return encode_image_job
