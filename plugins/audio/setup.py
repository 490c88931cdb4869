from setuptools import find_packages, setup

setup(
    name="bridle-audio",
    version="0.1.0",
    description="Audio modality plugin for Bridle: waveforms to log-mel fbank patches",
    python_requires=">=3.9",
    packages=find_packages(include=["bridle_audio", "bridle_audio.*"]),
    install_requires=["torchaudio>=2.1", "soundfile>=0.12", "numpy"],  # and bridle itself
    entry_points={"bridle.plugins": ["audio = bridle_audio"]},
)
