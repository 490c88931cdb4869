from setuptools import find_packages, setup

PLUGINS = {"audio": "bridle_audio", "image": "bridle_image", "video": "bridle_video"}

packages = find_packages(include=["bridle", "bridle.*"])
package_dir = {"bridle": "bridle"}
for modality, pkg in PLUGINS.items():
    root = f"plugins/{modality}"
    for sub in find_packages(where=root, include=[pkg, pkg + ".*"]):
        packages.append(sub)
        package_dir[sub] = f"{root}/" + sub.replace(".", "/")

setup(
    name="bridle",
    version="0.1.0",
    description="Self-supervised pretraining with quantized targets (BRIDLE) across modalities",
    python_requires=">=3.9",
    packages=packages,
    package_dir=package_dir,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "torchaudio>=2.1",
        "timm>=0.9",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "yacs>=0.1.8",
        "decord>=0.6",
        "pytorchvideo>=0.1.5",
        "soundfile>=0.12",
        "tensorboard>=2.10",
        "tqdm>=4.60",
        "numpy",
        "scikit-learn>=1.0",
        "matplotlib>=3.5",
        "submitit>=1.4",
        "webdataset>=0.2.48",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "scikit-learn>=1.0",
            "vector-quantize-pytorch>=1.14",
            "scikit-image>=0.20",
            "av>=10",
            "hypothesis>=6",
        ],
    },
    entry_points={
        "bridle.plugins": [f"{m} = {p}" for m, p in PLUGINS.items()],
    },
)
