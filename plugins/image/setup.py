from setuptools import find_packages, setup

setup(
    name="bridle-image",
    version="0.1.0",
    description="Image modality plugin for Bridle",
    python_requires=">=3.9",
    packages=find_packages(include=["bridle_image", "bridle_image.*"]),
    install_requires=[
        "torchvision>=0.16",
        "timm>=0.9",
        "pillow",
        "numpy",
        "scikit-learn>=1.0",  # DATASET "digits": scikit-learn ships the data, no download
    ],  # and bridle itself
    entry_points={"bridle.plugins": ["image = bridle_image"]},
)
