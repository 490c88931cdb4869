"""The "mixup_cutmix" batch transform: ``timm.data.Mixup`` on ``batch["input"]`` with soft targets
in ``batch["label"]`` (float [B, num_classes], label smoothing folded in).

Applied by fine-tuning trainers to training batches on the device; any mode other than
"finetune" gets the identity. Works on [B, C, H, W] and on inputs with more leading dims
([B, C, T, H, W]: cutmix cuts the same box out of every frame). timm needs an even batch; with
an odd batch (a skipped unreadable item) the last sample stays unmixed and gets its smoothed
one-hot target.
"""

from typing import Callable, Dict

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

from bridle.data.robust import check_mode
from bridle.registry import TRANSFORM


class MixupCutmix:
    def __init__(
        self,
        num_classes: int,
        alpha: float,
        cutmix_alpha: float,
        prob: float,
        switch_prob: float,
        mode: str,
        label_smoothing: float,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"mixup_cutmix needs MODEL.HEAD.NUM_CLASSES >= 2; got {num_classes}.")
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"INPUT.IMAGE.MIXUP.MODE must be 'batch', 'pair' or 'elem'; got '{mode}'.")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = Mixup(
            mixup_alpha=alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )

    def __call__(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, y = batch["input"], batch["label"]
        multi_label = y.is_floating_point()
        if multi_label and (y.dim() != 2 or y.shape[1] != self.num_classes):
            raise ValueError(
                f"mixup_cutmix: float labels must be multi-hot [B, {self.num_classes}] "
                f"(MODEL.HEAD.NUM_CLASSES); got {list(y.shape)}."
            )
        self.mixup.multi_label = multi_label
        n = x.shape[0] - x.shape[0] % 2
        images = x.reshape(x.shape[0], -1, *x.shape[-2:])  # cutmix cuts the last two dims
        if n:
            _, mixed = self.mixup(images[:n], y[:n])  # mixes images[:n] in place
        else:
            mixed = y.new_zeros((0, self.num_classes), dtype=torch.float32)
        if n < x.shape[0]:
            rest = mixup_target(y[n:], self.num_classes, 1.0, self.label_smoothing, multi_label)
            mixed = torch.cat([mixed, rest.to(mixed.dtype)])
        out = dict(batch)
        out["input"] = images.reshape(x.shape)
        out["label"] = mixed
        return out


def _identity(batch):
    return batch


@TRANSFORM.register(name="mixup_cutmix")
def build_mixup_cutmix(cfg, mode: str) -> Callable:
    check_mode(mode, "TRANSFORM 'mixup_cutmix'")
    m = cfg.INPUT.IMAGE.MIXUP
    if mode != "finetune" or (m.ALPHA <= 0 and m.CUTMIX_ALPHA <= 0) or m.PROB <= 0:
        return _identity
    return MixupCutmix(
        num_classes=int(cfg.MODEL.HEAD.NUM_CLASSES),
        alpha=float(m.ALPHA),
        cutmix_alpha=float(m.CUTMIX_ALPHA),
        prob=float(m.PROB),
        switch_prob=float(m.SWITCH_PROB),
        mode=m.MODE,
        label_smoothing=float(m.LABEL_SMOOTHING),
    )
