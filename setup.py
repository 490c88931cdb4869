"""The modality-free core distribution ``bridle``.

The modality plugins are distributions of their own (plugins/audio, plugins/image,
plugins/video, each with its own setup.py and ``bridle.plugins`` entry point, exactly like a
third-party plugin), so installing the core pulls in no audio or video library.
Development setup (what `make test` runs):

    pip install -e ".[dev]" -e plugins/audio -e plugins/image -e plugins/video
"""

from setuptools import find_packages, setup

setup(
    name="bridle",
    version="0.1.0",
    description="Self-supervised pretraining with quantized targets (BRIDLE, arXiv 2502.02118): the modality-free core",
    python_requires=">=3.9",
    packages=find_packages(include=["bridle", "bridle.*"]),
    install_requires=[
        "torch>=2.1",
        "timm>=0.9",  # bridle/modeling: ViT blocks
        "fvcore>=0.1.5",  # CfgNode, Registry, Checkpointer
        "iopath>=0.1.9",  # PathManager of the Checkpointer
        "yacs>=0.1.8",  # under fvcore's CfgNode
        "pyyaml",  # config files
        "numpy",
        "tensorboard>=2.10",  # TensorboardWriter (torch.utils.tensorboard)
        "tqdm>=4.60",
        "scikit-learn>=1.0",  # the demo's logistic-regression baseline
        "scipy",  # Spearman correlation of the online-probe study (bridle/demo/probe_study.py)
        "matplotlib>=3.5",  # tools/plot_metrics.py
        "submitit>=1.4",  # Slurm jobs (tools/submit.py)
        "cloudpickle",  # ships the submitted job by value (submitit depends on it too)
        "webdataset>=0.2.48",  # tar shards (bridle/data/shards)
        "safetensors>=0.4",  # exported folders' weights (bridle/checkpoint/folder.py, bridle/interop/hub.py)
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "hypothesis>=6",
            "ruff>=0.6",  # `make lint`; config in pyproject.toml
            "vector-quantize-pytorch>=1.14",  # reference quantizers the tests compare against
            "scikit-image>=0.20",
            "av>=10",  # tests and benchmarks that write/read video files
        ],
    },
)
