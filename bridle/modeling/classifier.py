"""Downstream classifier: pretrained encoder + global mean pool + head (facebookresearch/mae models_vit.py).

    tokens = encoder(x, final_norm=False)  # [B, 1 + N, D], the blocks' output WITHOUT the final norm
    feat   = fc_norm(mean(tokens[:, 1:]))  # mean over patch tokens, the cls token is not used
    feat   = BatchNorm1d(affine=False)     # only with MODEL.HEAD.BATCHNORM (MAE linear probe)
    logits = head(dropout(feat))           # Linear, trunc-normal(std MODEL.HEAD.INIT_STD), zero bias

Training returns ``{"loss_cls": ...}``: MODEL.HEAD.LOSS "ce" is cross-entropy (class ids with
MODEL.HEAD.LABEL_SMOOTHING; float [B, C] targets, e.g. after mixup, as soft-target
cross-entropy, their own smoothing already included); "bce" is binary cross-entropy with
logits on multi-hot targets (class ids are one-hot encoded). Eval mode returns logits [B, C].
"""

import inspect
from typing import Dict, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridle.registry import HEAD, META_ARCH

from .vit import build_encoder

_LOSSES = ("ce", "bce")


@HEAD.register(name="linear")
def build_linear_head(cfg, in_dim: int, num_classes: int) -> nn.Module:
    """Linear, trunc-normal(std MODEL.HEAD.INIT_STD) weights, zero bias."""
    head = nn.Linear(in_dim, num_classes)
    nn.init.trunc_normal_(head.weight, std=float(cfg.MODEL.HEAD.INIT_STD))
    nn.init.zeros_(head.bias)
    return head


@META_ARCH.register(name="EncoderClassifier")
class EncoderClassifier(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        h = cfg.MODEL.HEAD
        self.loss_type = str(h.LOSS).lower()
        if self.loss_type not in _LOSSES:
            raise ValueError(f"MODEL.HEAD.LOSS must be one of {_LOSSES}; got '{h.LOSS}'.")
        self.num_classes = int(h.NUM_CLASSES)
        if self.num_classes <= 0:
            raise ValueError(f"MODEL.HEAD.NUM_CLASSES must be > 0; got {h.NUM_CLASSES}.")
        self.label_smoothing = float(h.LABEL_SMOOTHING)
        self.encoder = build_encoder(cfg)  # stochastic depth from MODEL.ENCODER.DROP_PATH
        dim = int(self.encoder.embed_dim)
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6) if h.BATCHNORM else None
        self.head_drop = nn.Dropout(float(h.DROPOUT))
        self.head = HEAD.get(getattr(h, "NAME", "linear"))(cfg, dim, self.num_classes)
        self.encoder_frozen = False
        self.pool_before_norm = "final_norm" in inspect.signature(self.encoder.forward).parameters
        norm = getattr(self.encoder, "norm", None)
        if self.pool_before_norm and isinstance(norm, nn.Module):
            norm.requires_grad_(False)  # unused by the pooling (kept so checkpoints load as they are)

    # -- layer-wise lr decay
    @property
    def num_layers(self) -> int:
        """Layer ids run from 0 (embeddings) to depth + 1 (final norm and head)."""
        return int(self.encoder.depth) + 1

    def layer_id(self, name: str) -> int:
        if name.startswith("encoder."):
            return self.encoder.layer_id(name[len("encoder.") :])
        return self.num_layers

    # -- linear probing
    def freeze_encoder(self) -> None:
        """Freeze the encoder (no gradients, always in eval mode: no dropout / drop-path);
        only fc_norm, the optional BatchNorm and the head remain trainable."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder_frozen = True
        self.encoder.eval()

    def train(self, mode: bool = True) -> "EncoderClassifier":
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    # -- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, normalised features [B, D] (before the optional BatchNorm): as MAE and the
        authors' global pooling, the mean of the last block's patch tokens without the encoder's
        final norm, then fc_norm. A backbone whose forward has no ``final_norm`` argument is
        pooled after its norm."""
        kw = {"final_norm": False} if self.pool_before_norm else {}
        if self.encoder_frozen:
            with torch.no_grad():
                tokens = self.encoder(x, **kw)
        else:
            tokens = self.encoder(x, **kw)
        return self.fc_norm(tokens[:, 1:].mean(dim=1))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.forward_features(x)
        if self.bn is not None:
            feat = self.bn(feat)
        return self.head(self.head_drop(feat))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.loss_type == "bce":
            if labels.dim() == 1:
                labels = F.one_hot(labels.long(), self.num_classes)
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if labels.dim() == 1:
            return F.cross_entropy(logits, labels.long(), label_smoothing=self.label_smoothing)
        if labels.shape != logits.shape:
            raise ValueError(f"Soft targets must be [B, {self.num_classes}]; got {list(labels.shape)}.")
        return torch.sum(-labels.to(logits.dtype) * F.log_softmax(logits, dim=-1), dim=-1).mean()

    def forward(self, batch: Union[Dict[str, torch.Tensor], torch.Tensor]):
        x = batch["input"] if isinstance(batch, dict) else batch
        logits = self.forward_logits(x)
        if not self.training:
            return logits
        if not isinstance(batch, dict) or "label" not in batch:
            raise KeyError("EncoderClassifier needs batch['label'] in training mode (a labelled DATASETS.TRAIN).")
        return {"loss_cls": self.loss(logits, batch["label"])}
