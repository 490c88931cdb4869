"""The "image" SAMPLE_DECODER: one WebDataset sample (the image file's bytes, JPEG as a rule, +
JSON label) -> the same item ``image_folder`` gives for the file: PIL RGB -> the mode's
transform (``build_image_transform``) -> ``{"input": float [3, H, W], "label": long}``.

Sample fields (written by ``tools/make_shards.py --image-folder``): ``jpg`` / ``jpeg`` / ``png`` /
``webp`` / ``bmp`` and ``json`` = ``{"label": int, "index": int}``.
"""
import io
from typing import Dict

import torch
from PIL import Image

from bridle.data.robust import check_mode
from bridle.data.shards import sample_payload
from bridle.registry import SAMPLE_DECODER

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
