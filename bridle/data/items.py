"""What a loader batch is made of: an unreadable item stands in as a :class:`BadItem`, and
:func:`skip_none_collate` drops those (and ``None``) while counting them. Both the map-style
loaders (bridle.data.build) and the streaming "shards" dataset (bridle.data.shards) use them."""

from typing import Any, List, Optional

import torch
from torch.utils.data import default_collate

__all__ = ["BadItem", "skip_none_collate"]


class BadItem:
    """Stands for an unreadable item in a batch: its dataset index and a description (the
    file name and error when the dataset records them, see RobustItemsMixin)."""

    __slots__ = ("index", "desc")

    def __init__(self, index: Any, desc: str) -> None:
        self.index, self.desc = index, desc

    def __getstate__(self):
        return (self.index, self.desc)

    def __setstate__(self, state):
        self.index, self.desc = state


def skip_none_collate(items: List[Optional[dict]]) -> dict:
    """Collate item dicts, dropping ``None`` / :class:`BadItem` (unreadable) items;
    ``num_skipped`` counts them and ``bad_items`` names those that are known. An item that is a
    list of item dicts (several samples from one read, e.g. repeated sampling) adds each."""
    items = [x for it in items for x in (it if isinstance(it, list) else [it])]
    good = [it for it in items if it is not None and not isinstance(it, BadItem)]
    skipped = len(items) - len(good)
    bad = [it.desc for it in items if isinstance(it, BadItem)]
    if not good:
        out = {"num_skipped": torch.tensor(skipped), "empty": True}
    else:
        out = default_collate(good)
        out["num_skipped"] = torch.tensor(skipped)
    if bad:
        out["bad_items"] = bad
    return out
