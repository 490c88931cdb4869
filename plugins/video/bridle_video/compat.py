"""Import shim for pytorchvideo 0.1.5, whose transforms import
``torchvision.transforms.functional_tensor`` -- renamed ``_functional_tensor`` in torchvision 0.17.
Every pytorchvideo import of Bridle goes through :func:`pytorchvideo_transforms`."""

import importlib
import sys
import warnings
from types import ModuleType

_OLD_NAME = "torchvision.transforms.functional_tensor"


def pytorchvideo_transforms() -> ModuleType:
    """``pytorchvideo.transforms``, importable on any torchvision."""
    if _OLD_NAME not in sys.modules:
        try:
            importlib.import_module(_OLD_NAME)
        except ImportError:
            sys.modules[_OLD_NAME] = importlib.import_module("torchvision.transforms._functional_tensor")
    with warnings.catch_warnings():  # its deprecated torch.jit uses are not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module("pytorchvideo.transforms")
