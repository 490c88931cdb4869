from setuptools import setup

setup(
    name="bridle-thirdparty",
    version="0.1",
    packages=["bridle_thirdparty"],
    entry_points={"bridle.plugins": ["thirdparty = bridle_thirdparty"]},
)
