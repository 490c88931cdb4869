"""Registered TRAINER entries: "schedule", "encoder", "tokenizer", "joint" (pretraining) and
"finetune", "linear_probe" (downstream). Each module registers itself on import."""

from . import finetune, pretrain, schedule  # noqa: F401
