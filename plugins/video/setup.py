from setuptools import find_packages, setup

setup(
    name="bridle-video",
    version="0.1.0",
    description="Video modality plugin for Bridle: clips to tubelet patches",
    python_requires=">=3.9",
    packages=find_packages(include=["bridle_video", "bridle_video.*"]),
    install_requires=[
        "torchvision>=0.16",
        "timm>=0.9",
        "decord>=0.6",  # clip decoding
        "pytorchvideo>=0.1.5",  # clip transforms
        "av>=10",  # the benchmark component writes its synthetic H.264 clip (pytorchvideo needs it too)
        "pillow",  # the video demo upsamples its digit strokes (bridle_video/moving_digits.py)
        "scikit-learn>=1.0",  # the video demo's strokes: sklearn.datasets.load_digits
    ],  # and bridle itself
    entry_points={"bridle.plugins": ["video = bridle_video"]},
)
