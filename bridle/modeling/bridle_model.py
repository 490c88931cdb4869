"""The BRIDLE pretraining model: encoder E, decoder D, tokenizer T, estimator TE.

``phase`` decides what trains and what is a frozen teacher:
- "encoder":   E + D learn to predict T's codes of the masked patches (masked CE); T frozen.
               With PRETRAIN.NUM_MASKS = M > 1, E + D see M masked views of each sample against
               one target (:meth:`BridleModel.masked_views`); the joint phase as well.
- "tokenizer": T + TE learn L_cos(TE(z_q), E(x)) + L_cb with E a frozen teacher on the
               unmasked input; D unused.
- "joint":     both losses, L_enc + ratio * L_tok, the tokenizer part every ``period`` steps.
Frozen modules have ``requires_grad=False`` and stay in eval mode (no dropout, no codebook
updates) whatever ``.train()`` is called with.
"""

import contextlib
import inspect
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridle.config.config import ConfigValueError
from bridle.protocols import InitializableCodebook, supports
from bridle.registry import META_ARCH

from .decoder import MaskedTokenDecoder
from .masking import build_mask_generator
from .quantizers.utils import UsageWindow, all_reduce_sum_, usage_metrics
from .tokenizer import build_estimator, build_tokenizer
from .vit import build_encoder, gather_tokens, visible_ids

PHASES = ("encoder", "tokenizer", "joint")
TARGET_PRECISIONS = ("fp32", "amp")
_TEACHER_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def masked_ids(mask: torch.Tensor, num_masked: int) -> torch.Tensor:
    """Indices [B, num_masked] of the masked tokens (no host sync)."""
    order = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)
    return order[:, :num_masked]


@META_ARCH.register(name="Bridle")
class BridleModel(nn.Module):
    def __init__(self, cfg, phase: str) -> None:
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"Unknown BRIDLE phase '{phase}'; expected one of {PHASES}.")
        self.phase = phase
        self.encoder = build_encoder(cfg)
        grid = self.encoder.grid_size
        dim = self.encoder.embed_dim
        self.tokenizer = build_tokenizer(cfg, dim)
        q = self.tokenizer.quantizer
        self.num_levels, self.codebook_size = int(q.num_levels), int(q.codebook_size)
        d = cfg.MODEL.DECODER
        self.decoder = MaskedTokenDecoder(
            dim,
            grid,
            self.num_levels * self.codebook_size,
            int(d.EMBED_DIM),
            int(d.DEPTH),
            int(d.NUM_HEADS),
            d.ATTENTION,
            d.WINDOW_SIZE,
            d.SHIFT_SIZE,
            block=str(d.BLOCK),
        )
        self.estimator = build_estimator(cfg, grid, dim)
        self.mask_generator = build_mask_generator(cfg, grid)
        self.num_masked = int(self.mask_generator.num_masked)
        if self.num_masked <= 0:
            raise ValueError("MODEL.MASK.RATIO masks no token: masked prediction needs masked tokens.")
        # Masked views per sample in the encoder phases (data2vec 2.0's "multi-mask"): the target
        # is computed once, the encoder and decoder see NUM_MASKS differently masked copies.
        self.num_masks = cfg.PRETRAIN.NUM_MASKS
        if isinstance(self.num_masks, bool) or not isinstance(self.num_masks, int) or self.num_masks < 1:
            raise ConfigValueError(f"PRETRAIN.NUM_MASKS = {self.num_masks!r}: expected an integer >= 1.")
        self.joint_ratio = float(cfg.PRETRAIN.JOINT_RATIO)
        self.teacher_precision = str(cfg.PRETRAIN.TEACHER_PRECISION)
        if self.teacher_precision not in _TEACHER_DTYPES:
            raise ValueError(
                f"PRETRAIN.TEACHER_PRECISION must be one of {sorted(_TEACHER_DTYPES)}; got '{self.teacher_precision}'."
            )
        self.teacher_layer = int(cfg.PRETRAIN.TEACHER_LAYER)
        depth = int(self.encoder.depth)  # a bridle.protocols.Backbone (checked by build_encoder)
        if self.teacher_layer < 0 or (self.teacher_layer and self.teacher_layer >= depth):
            raise ValueError(
                f"PRETRAIN.TEACHER_LAYER must be 0 (the final normed output) or a block 1..{depth - 1} of the "
                f"{depth}-block encoder; got {self.teacher_layer}."
            )
        if self.teacher_layer and "num_blocks" not in inspect.signature(self.encoder.forward).parameters:
            raise TypeError(
                f"PRETRAIN.TEACHER_LAYER {self.teacher_layer} needs an encoder whose forward takes num_blocks= "
                f"(bridle.modeling.VisionTransformer's does); {type(self.encoder).__name__}.forward does not."
            )
        self.target_precision = str(cfg.MODEL.TOKENIZER.TARGET_PRECISION)
        if self.target_precision not in TARGET_PRECISIONS:
            raise ValueError(
                f"MODEL.TOKENIZER.TARGET_PRECISION must be one of {TARGET_PRECISIONS}; got '{self.target_precision}'."
            )
        # Code usage of the targets over the last DEAD_CODE_WINDOW training forwards (all ranks).
        self.target_usage = UsageWindow(self.num_levels, self.codebook_size, int(cfg.MODEL.QUANTIZER.DEAD_CODE_WINDOW))
        self.joint_period = max(1, int(cfg.PRETRAIN.JOINT_TOKENIZER_PERIOD))
        self.global_step = 0  # set by the trainer (joint phase schedules tokenizer steps on it)
        # The joint phase skips the tokenizer on most steps: DDP must tolerate unused params.
        self.ddp_find_unused_parameters = phase == "joint"
        if cfg.MODEL.TOKENIZER.COLD_START and phase != "encoder":
            raise ValueError("MODEL.TOKENIZER.COLD_START is only for the encoder phase (encoder_cold).")
        for m in self.frozen_modules():
            m.requires_grad_(False)
        for p in self.tokenizer.parameters() if self.tokenizer.cold_start else []:
            p.requires_grad_(False)

    @property
    def global_step(self) -> int:
        return self._global_step

    @global_step.setter
    def global_step(self, step: int) -> None:
        # The joint phase's schedule is kept as a bool (tokenizer_step): under torch.compile the
        # forward guards on its two values (two graphs), not on the step (a recompile per step).
        self._global_step = int(step)
        self.tokenizer_step = self._global_step % self.joint_period == 0

    def parameter_counts(self) -> Dict[str, int]:
        """Parameters per module (trainable or not), e.g. {"encoder": 85_800_000, ...}."""
        return {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("encoder", "decoder", "tokenizer", "estimator")
        }

    # -- which parts train
    def trained_modules(self) -> List[nn.Module]:
        return {
            "encoder": [self.encoder, self.decoder],
            "tokenizer": [self.tokenizer, self.estimator],
            "joint": [self.encoder, self.decoder, self.tokenizer, self.estimator],
        }[self.phase]

    def frozen_modules(self) -> List[nn.Module]:
        trained = {id(m) for m in self.trained_modules()}
        return [m for m in (self.encoder, self.decoder, self.tokenizer, self.estimator) if id(m) not in trained]

    def train(self, mode: bool = True) -> "BridleModel":
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        if self.tokenizer.cold_start:
            self.tokenizer.eval()
        return self

    # -- losses
    def masked_prediction(self, x: torch.Tensor, codes: torch.Tensor, soft_codes=None) -> Dict[str, torch.Tensor]:
        """Cross-entropy of D's logits against the codes of the masked patches only, averaged over
        masked patches x levels."""
        b = x.shape[0]
        mask = self.mask_generator(b, device=x.device)
        ids_keep = visible_ids(mask, self.num_masked)
        ids_mask = masked_ids(mask, self.num_masked)
        latent = self.encoder(x, ids_keep)
        logits = self.decoder(latent, ids_keep, ids_mask)  # [B, M, L*K]
        logits = logits.float().reshape(b, self.num_masked, self.num_levels, self.codebook_size)
        target = gather_tokens(codes, ids_mask)  # [B, M, L]
        flat = logits.reshape(-1, self.codebook_size)
        if soft_codes is not None and soft_codes.shape[-1] > 1:
            k = soft_codes.shape[-1]
            soft = soft_codes.gather(1, ids_mask[:, :, None, None].expand(-1, -1, *soft_codes.shape[2:]))
            dist = torch.zeros_like(logits).scatter_(-1, soft, 1.0 / k)
            loss = torch.sum(-dist.reshape_as(flat) * F.log_softmax(flat, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(flat, target.reshape(-1))
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float().mean()
        return {"loss_mlm": loss, "mlm_acc": acc}

    def masked_views(self, x: torch.Tensor, codes: torch.Tensor, soft_codes=None):
        """The input and its targets repeated NUM_MASKS times along dim 0 (view v of sample i is row
        v * B + i): :meth:`masked_prediction` draws one mask per row from the phase's generator
        (one call for all B x M rows, so the RNG is consumed as a batch of B x M) and averages its
        loss over every masked token of every view, i.e. over the views. The target (the
        tokenizer's forward) and everything before the model (loading, augmentation, the
        dataset's device transform) are paid once per sample; only the encoder and decoder run M
        times (one forward, one backward). The multi-mask training of data2vec 2.0 (arXiv
        2212.07525) and EAT (arXiv 2401.03497)."""
        m = self.num_masks

        def rep(t):
            return t.repeat(m, *([1] * (t.dim() - 1)))

        return rep(x), rep(codes), (rep(soft_codes) if soft_codes is not None else None)

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's normed tokens on the unmasked input, cls dropped, fp32, computed
        without autograd state in PRETRAIN.TEACHER_PRECISION."""
        kind = self.teacher_precision
        if kind == "auto":
            ctx = contextlib.nullcontext()
        else:
            # cache_enabled=False: inside the joint phase's fp16 step, autocast's weight cache
            # holds fp16 copies of the (trained) encoder's weights; a bf16 teacher must not reuse them.
            ctx = torch.autocast(
                x.device.type, dtype=_TEACHER_DTYPES[kind], enabled=kind != "fp32", cache_enabled=False
            )
        with torch.no_grad(), ctx:
            if not self.teacher_layer:
                return self.encoder(x)[:, 1:].float()
            tokens = self.encoder(x, num_blocks=self.teacher_layer)[:, 1:].float()
            return F.layer_norm(tokens, tokens.shape[-1:], eps=1e-6)

    def tokenizer_loss(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        teacher = self.teacher_features(x)
        q = self.tokenizer(x)
        rec = self.estimator(q.quantized).float()
        loss_cos = (1.0 - F.cosine_similarity(rec, teacher, dim=-1)).mean()
        out = {"loss_cos": loss_cos, "loss_cb": q.loss}
        out.update({f"quantizer/{k}": v for k, v in q.metrics.items()})
        return out

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x = batch["input"]
        if not self.training:
            return {"codes": self.tokenize(x)}
        if self.phase == "tokenizer":
            return self.tokenizer_loss(x)
        q = self.targets(x)
        if self.num_masks == 1:
            out = self.masked_prediction(x, q.codes, q.soft_codes)
        else:
            out = self.masked_prediction(*self.masked_views(x, q.codes, q.soft_codes))
        out.update({f"targets/{k}": v for k, v in self._target_metrics(q).items()})
        if self.phase == "joint" and self.tokenizer_step:
            tok = self.tokenizer_loss(x)
            for k, v in tok.items():
                out[k] = v * self.joint_ratio if k.startswith("loss") else v
        return out

    def _target_context(self, x: torch.Tensor):
        """fp32 (autocast off) for MODEL.TOKENIZER.TARGET_PRECISION "fp32"; else the caller's."""
        if self.target_precision == "fp32":
            return torch.autocast(device_type=x.device.type, enabled=False)
        return contextlib.nullcontext()

    @torch.no_grad()
    def targets(self, x: torch.Tensor):
        """The tokenizer's output (codes, soft codes, metrics) as masked-prediction targets: eval
        mode (targets never update the codebooks), no autograd state, and features + quantizer in
        fp32 unless MODEL.TOKENIZER.TARGET_PRECISION is "amp" (then the surrounding autocast)."""
        was = self.tokenizer.training
        self.tokenizer.eval()
        try:
            with self._target_context(x):
                return self.tokenizer(x.float() if self.target_precision == "fp32" else x)
        finally:
            self.tokenizer.train(was)

    @torch.no_grad()
    def _target_metrics(self, q) -> Dict[str, torch.Tensor]:
        """Per-level usage of the targets over the window (all ranks), plus the batch's
        reconstruction error."""
        counts = torch.zeros(self.num_levels * self.codebook_size, device=q.codes.device)
        offsets = torch.arange(self.num_levels, device=q.codes.device) * self.codebook_size
        flat = (q.codes.reshape(-1, self.num_levels) + offsets).reshape(-1)
        counts.index_add_(0, flat, torch.ones(flat.numel(), device=flat.device))
        counts = counts.view(self.num_levels, self.codebook_size)
        all_reduce_sum_([counts])
        self.target_usage.push(counts)
        window = self.target_usage.counts
        out = usage_metrics(window, (window < 1).float().sum(dim=-1))
        if "recon_mse" in q.metrics:
            out["recon_mse"] = q.metrics["recon_mse"]
        return out

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Code ids [B, N, L] of every patch (as :meth:`targets`)."""
        return self.targets(x).codes

    @torch.no_grad()
    def init_tokenizer_codebooks(self, x: torch.Tensor) -> None:
        """Run the quantizer's configured init (k-means) on this batch's tokenizer features,
        once, before training (all ranks call this; the quantizer keeps ranks identical)."""
        q = self.tokenizer.quantizer
        if supports(q, InitializableCodebook) and not q.is_initialized():  # codebook-free: nothing to do
            with self._target_context(x):  # k-means on the features the targets will see
                q.init_codebook(self.tokenizer.features(x.float() if self.target_precision == "fp32" else x).float())
