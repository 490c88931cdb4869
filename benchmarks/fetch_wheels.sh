#!/usr/bin/env bash
# Wheels of the Python packages the project needs that the GPU machine's image lacks (its image
# has torch 2.11 + torchvision + torchaudio + timm, Python 3.12; /work/.library/device/KINDS.md),
# into benchmarks/wheels/ (git-ignored, ~16 MB): name it in the device run's `carry`.
# Run here, where PyPI is reachable:  benchmarks/fetch_wheels.sh
set -eu
cd "$(dirname "$0")/.."
W=benchmarks/wheels
mkdir -p $W
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64"
for pkg in yacs iopath termcolor soundfile cffi pycparser decord parameterized; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d $W "$pkg"
done
# sdist-only, pure Python: build the wheels here
python3 -m pip wheel -q --no-deps -w $W fvcore==0.1.5.post20221221 pytorchvideo==0.1.5
ls -la $W
