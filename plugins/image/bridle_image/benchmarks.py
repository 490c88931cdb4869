"""The image plugin's benchmarks: the "image" pipeline of the core "loader" component
(tools/benchmark.py --component loader): ImageNet-like JPEGs in an ImageFolder vs JPEG shards.
Imported by bridle.benchmark.load_components."""

import os

from bridle.benchmark import LoaderCase
from bridle.benchmark.loader import LOADER_PIPELINE
from bridle.data.shards import write_shards_cli


@LOADER_PIPELINE.register(name="image")
def loader_pipeline(root: str, n: int) -> LoaderCase:
    """``n`` ImageNet-like images (500 x 375 JPEG, q 90) in ImageFolder layout ("image_folder",
    4 classes), and the same as JPEG shards."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = os.path.join(root, "train", f"c{i % 4}")
        os.makedirs(d, exist_ok=True)
        yy, xx = np.mgrid[0:375, 0:500]
        img = np.stack([(xx * (i + 1)) % 256, (yy * 3 + i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
    index = write_shards_cli(
        [
            "--image-folder",
            os.path.join(root, "train"),
            "--out",
            os.path.join(root, "shards"),
            "--num-workers",
            "1",
            "--shard-size",
            str(max(1, n // 4)),
        ]
    )
    return LoaderCase(
        recipe="configs/image/pretrain_rq.yaml",
        index=index,
        files_dataset="image_folder",
        opts=["DATASETS.IMAGE.ROOT", root],
        layouts=[("shards (JPEG)", "shards")],
        file_exts=(".jpg",),
    )
