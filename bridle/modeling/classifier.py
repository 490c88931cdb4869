"""Downstream classifier: pretrained encoder + global mean pool + head (SPEC §5).

    tokens = encoder(x)                    # [B, 1 + N, D], after the encoder's final norm
    feat   = fc_norm(mean(tokens[:, 1:]))  # mean over patch tokens, the cls token is not used
    feat   = BatchNorm1d(affine=False)     # only with MODEL.HEAD.BATCHNORM (MAE linear probe)
    logits = head(dropout(feat))           # Linear, trunc-normal(std MODEL.HEAD.INIT_STD), zero bias

Training returns ``{"loss_cls": ...}``: MODEL.HEAD.LOSS "ce" is cross-entropy (class ids with
MODEL.HEAD.LABEL_SMOOTHING; float [B, C] targets, e.g. after mixup, as soft-target
cross-entropy, their own smoothing already included); "bce" is binary cross-entropy with
logits on multi-hot targets (class ids are one-hot encoded). Eval mode returns logits [B, C].
"""
from typing import Dict, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridle.registry import META_ARCH

from .vit import build_encoder

_LOSSES = ("ce", "bce")


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
        self.head = nn.Linear(dim, self.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=float(h.INIT_STD))
        nn.init.zeros_(self.head.bias)
        self.encoder_frozen = False

    # -- layer-wise lr decay
    @property
    def num_layers(self) -> int:
        """Layer ids run from 0 (embeddings) to depth + 1 (final norm and head)."""
        return int(self.encoder.depth) + 1

    def layer_id(self, name: str) -> int:
        if name.startswith("encoder."):
            return self.encoder.layer_id(name[len("encoder."):])
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
        """Pooled, normalised features [B, D] (before the optional BatchNorm)."""
        if self.encoder_frozen:
            with torch.no_grad():
                tokens = self.encoder(x)
        else:
            tokens = self.encoder(x)
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
