"""Shared machinery of the codebook quantizers (VQ = one level, RQ = several levels): a chain
of ``L`` codebooks of ``K`` codes of dimension ``D`` applied to the residual. The lookups, the
state, the metrics and the distributed behaviour are described in docs/quantizers.md.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridle.utils import comm

from .kmeans import assign_nearest, fit_kmeans
from .options import INIT_METHODS, QuantizerOptions
from .utils import UsageWindow, all_reduce_sum_, broadcast_many_, hashed_rows, l2norm, scale_grad, usage_metrics

__all__ = ["QuantizerOutput", "CodebookQuantizer", "INIT_METHODS", "LOOKUPS"]

LOOKUPS = ("unit", "cosine", "euclidean")


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns.

    quantized: ``[..., D]`` in the input dtype, straight-through (forward value = the sum of the
        level vectors, gradient = identity to the quantizer's input space).
    codes: long ``[..., L]``, the top-1 code of every level.
    loss: fp32 scalar, codebook + commitment loss.
    metrics: 0-d fp32 tensors (usage per level, reconstruction error); never synced to host.
    soft_codes: long ``[..., L, k]`` top-k codes per level when ``soft_codes > 1``, else None.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    metrics: Dict[str, torch.Tensor] = field(default_factory=dict)
    soft_codes: Optional[torch.Tensor] = None


def _sync_host_state(module: "CodebookQuantizer", incompatible_keys: Any) -> None:
    # Runs after load_state_dict (outside the training step): refresh the host mirror of the
    # loaded ``initialized`` buffer (the one Python-side flag the forward reads).
    module._initialized = bool(module.initialized.item())


def _keep_codes(x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    # The branch of the compiled init taken once the codebook is initialised (a cond branch
    # must not return one of its inputs).
    return cb.clone()


class CodebookQuantizer(nn.Module):
    """A chain of ``num_levels`` codebooks applied to the residual (see docs/quantizers.md).

    Subclasses fix ``normalize_input`` / ``normalize_codes`` (and expose ``from_config``):
    :class:`~bridle.modeling.quantizers.VectorQuantizer` and
    :class:`~bridle.modeling.quantizers.ResidualQuantizer`.

    Args:
        num_levels: codebooks applied one after the other to the residual (``L``).
        codebook_size: codes per level (``K``).
        code_dim: dimension of the inputs and codes (``D``).
        normalize_input: l2-normalise the input before the first level (VQ).
        normalize_codes: keep unit-norm codes (NormEMA: the EMA target is the normalised mean
            of the normalised rows, and the code is renormalised after each step).
            When False, codes keep the length of the mean of their (raw) rows.
        lookup: ``"unit"`` (normalised residual vs unit codes; needs ``normalize_codes``),
            ``"cosine"`` or ``"euclidean"`` (see docs/quantizers.md). It also sets the k-means
            metric (spherical for ``unit``/``cosine``).
        **options: the training options, fields of
            :class:`~bridle.modeling.quantizers.QuantizerOptions` (EMA, init, dead-code
            restarts, soft codes), with their defaults and checks.
    """

    def __init__(
        self,
        *,
        num_levels: int,
        codebook_size: int,
        code_dim: int,
        normalize_input: bool,
        normalize_codes: bool,
        lookup: str = "cosine",
        **options: Any,
    ) -> None:
        super().__init__()
        if num_levels < 1 or codebook_size < 1 or code_dim < 1:
            raise ValueError(
                "num_levels, codebook_size and code_dim (MODEL.QUANTIZER.NUM_LEVELS / "
                f"CODEBOOK_SIZE / CODE_DIM) must be >= 1; got {num_levels}, {codebook_size}, {code_dim}"
            )
        opts = QuantizerOptions(**options)
        opts.validate(codebook_size)
        if lookup not in LOOKUPS:
            raise ValueError(f"MODEL.QUANTIZER.LOOKUP (lookup) must be one of {LOOKUPS}; got '{lookup}'")
        if lookup == "unit" and not normalize_codes:
            raise ValueError("lookup 'unit' needs normalize_codes=True (unit-length codes)")
        self.num_levels = int(num_levels)
        self.codebook_size = int(codebook_size)
        self.code_dim = int(code_dim)
        self.normalize_input = bool(normalize_input)
        self.normalize_codes = bool(normalize_codes)
        self.lookup = lookup
        #: nearest-code metric of the lookup and of k-means
        self.metric = "euclidean" if lookup == "euclidean" else "cosine"
        # ema, decay, commitment, init, ..., soft_codes: see QuantizerOptions
        for name, value in opts.as_kwargs().items():
            setattr(self, name, value)

        weight = self._random_codes()
        if self.ema:
            if self.normalize_codes:
                weight = l2norm(weight)
            self.register_buffer("codebook", weight)
        else:
            self.codebook = nn.Parameter(weight)
        self.window = UsageWindow(num_levels, codebook_size, self.dead_code_window)
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))
        self.register_buffer("_level_offsets", torch.arange(num_levels) * codebook_size, persistent=False)
        # Host mirror of ``initialized``: under torch.compile a guard (it changes once, at the
        # init), never a graph break; the step counter lives on the device only (num_updates).
        self._initialized = False
        self.register_load_state_dict_post_hook(_sync_host_state)

    @property
    def usage(self) -> torch.Tensor:
        """fp32 ``[L, K]``: rows per code over the last ``dead_code_window`` training forwards."""
        return self.window.counts

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the usage window held an EMA "usage" buffer: ignore it.
        state_dict.pop(prefix + "usage", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ config
    @staticmethod
    def config_kwargs(qcfg) -> Dict[str, Any]:
        """Constructor kwargs shared by every quantizer, read from ``cfg.MODEL.QUANTIZER``: the
        sizes and the :class:`QuantizerOptions`."""
        return dict(
            codebook_size=int(qcfg.CODEBOOK_SIZE),
            code_dim=int(qcfg.CODE_DIM),
            **QuantizerOptions.from_config(qcfg).as_kwargs(),
        )

    # ------------------------------------------------------------------ state
    def _random_codes(self) -> torch.Tensor:
        shape = (self.num_levels, self.codebook_size, self.code_dim)
        if self.init == "normal":
            return torch.randn(shape) * self.init_weight_multiplier
        # "uniform", and the placeholder that k-means overwrites.
        return torch.rand(shape) * self.init_weight_multiplier

    def is_initialized(self) -> bool:
        if not self._initialized and bool(self.initialized):  # initialised by a compiled forward
            self._initialized = True
        return self._initialized

    def codebook_state_keys(self) -> List[str]:
        """State-dict keys (relative to this module) that a new tokenizer phase re-initialises
        instead of loading: the codebook state. Here that is every tensor of the quantizer (it
        holds no other learned layer); a quantizer with trained layers of its own lists only its
        codebook tensors, and one without the method keeps all of its tensors."""
        return list(self.state_dict().keys())

    def bookkeeping_state_keys(self) -> List[str]:
        """State-dict keys (relative to this module) of training bookkeeping: restored on
        resume, but started afresh when a new phase is handed this quantizer (the usage window)."""
        return ["window." + k for k in self.window.state_dict()]

    def _mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self._initialized = True

    def _effective_codebook(self) -> torch.Tensor:
        """fp32 ``[L, K, D]`` level vectors as used by forward (differentiable if learned)."""
        cb = self.codebook.float()
        return l2norm(cb) if self.normalize_codes else cb

    def get_codebooks(self) -> torch.Tensor:
        """A detached copy of the level vectors, fp32 ``[L, K, D]``."""
        with torch.no_grad():
            return self._effective_codebook().detach().clone()

    def codes_to_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the level vectors of ``codes`` (long ``[..., L]``) -> fp32 ``[..., D]``.

        This is the forward value of ``quantized`` for those codes.
        """
        if codes.shape[-1] != self.num_levels:
            raise ValueError(
                f"codes must end with a dim of size num_levels={self.num_levels}; got {tuple(codes.shape)}"
            )
        flat = self._effective_codebook().reshape(-1, self.code_dim)
        return F.embedding(codes.long() + self._level_offsets, flat).sum(dim=-2)

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 3) or z.shape[-1] != self.code_dim:
            raise ValueError(
                f"{type(self).__name__} expects z of shape [B, N, {self.code_dim}] or [M, {self.code_dim}] "
                f"(MODEL.QUANTIZER.CODE_DIM); got {tuple(z.shape)}"
            )
        x = z.reshape(-1, self.code_dim).float()
        return l2norm(x) if self.normalize_input else x

    # ------------------------------------------------------------------ core
    def _lookup(self, x: torch.Tensor, codebook: torch.Tensor):
        """Run the residual chain on ``x [M, D]``. Returns the level inputs ``[r_1..r_L]``
        (each ``[M, D]``, differentiable w.r.t. ``x``), the level vectors ``[q_1..q_L]``
        (differentiable w.r.t. a learned codebook), codes ``long [M, L]`` and the top-k codes
        ``long [M, L, k]`` (or None)."""
        cosine = self.metric == "cosine"
        if cosine:
            keys = l2norm(codebook.detach())
        else:
            keys = codebook.detach()
            neg_half_sq = -0.5 * keys.pow(2).sum(dim=-1)  # [L, K]
        residual = x
        inputs, vectors, codes, tops = [], [], [], []
        for level in range(self.num_levels):
            r = residual.detach()
            if cosine:
                scores = l2norm(r) @ keys[level].t()  # [M, K] cosine similarity
            else:  # r.c - ||c||^2 / 2 = -||r - c||^2 / 2 + const(row)
                scores = torch.addmm(neg_half_sq[level], r, keys[level].t())
            if self.soft_codes > 1:  # the k *nearest* codes (largest scores)
                top = scores.topk(self.soft_codes, dim=1).indices
                idx = top[:, 0]
                tops.append(top)
            else:
                idx = scores.argmax(dim=1)
            q = codebook[level].index_select(0, idx)
            inputs.append(residual)
            vectors.append(q)
            codes.append(idx)
            if level + 1 < self.num_levels:
                residual = residual - q.detach()
        top_k = torch.stack(tops, dim=1) if tops else None
        return inputs, vectors, torch.stack(codes, dim=1), top_k

    def _count(self, codes: torch.Tensor) -> torch.Tensor:
        """Rows per code, fp32 ``[L, K]``, from codes ``long [M, L]``."""
        flat = (codes + self._level_offsets).reshape(-1)
        counts = torch.zeros(self.num_levels * self.codebook_size, device=codes.device)
        counts.index_add_(0, flat, torch.ones(flat.numel(), device=codes.device))
        return counts.view(self.num_levels, self.codebook_size)

    @torch.no_grad()
    def init_codebook(self, z: torch.Tensor) -> None:
        """Run the configured init on ``z`` ([B, N, D] or [M, D]) and mark the quantizer
        initialised. Under DDP every rank must call it (it broadcasts rank 0's result)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            self._init_from(self._prepare(z.detach()))

    def _init_from(self, x: torch.Tensor) -> None:
        cb = self.codebook.data
        cb.copy_(self._init_codes(x, cb.float()))
        self.window.reset()
        self._mark_initialized()

    def _init_codes(self, x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
        """The initialised codebook, fp32 ``[L, K, D]``, from the rows ``x [M, D]`` and the
        current (random) codes ``cb`` (fp32 ``[L, K, D]``); a pure function of them (and of the
        random draws of k-means), so that the compiled forward can run it inside ``torch.cond``."""
        residual = x
        cosine = self.metric == "cosine"
        codes = []
        for level in range(self.num_levels):
            if self.init in ("kmeans", "kmeans++"):
                seeding = "random" if self.init == "kmeans" else "kmeans++"
                km = fit_kmeans(residual, self.codebook_size, self.kmeans_iters, metric=self.metric, seeding=seeding)
                directions, assign = l2norm(km.centroids), km.assignments
            else:
                directions = l2norm(cb[level])
                assign = (l2norm(residual) @ directions.t()).argmax(dim=1)
            if self.normalize_codes:
                # EMA codebooks hold unit vectors; a learned codebook keeps its random draw
                # (only its directions matter) unless k-means replaced it.
                code = directions if (self.ema or self.init.startswith("kmeans")) else cb[level].clone()
            else:
                code = self._code_lengths(residual, directions, assign)
            broadcast_many_([code])
            codes.append(code.to(self.codebook.dtype).float())  # the value the buffer will hold
            idx = assign_nearest(residual, code, cosine=cosine)
            residual = residual - code.index_select(0, idx)
        return torch.stack(codes)

    def _init_in_graph(self, x: torch.Tensor) -> None:
        """The first-batch init of a compiled training forward, as tensor ops: ``torch.cond`` on
        the ``initialized`` buffer runs k-means only while it is False (one graph, no guard on a
        Python flag, no recompilation after the first step). The eager forward branches on the
        host mirror ``_initialized`` instead (``torch.cond`` would compile itself there)."""
        cb = self.codebook.data
        new = torch.cond(self.initialized, _keep_codes, self._init_codes, (x, cb.float()))
        fresh = ~self.initialized
        cb.copy_(new)
        self.window.reset(fresh.expand(self.num_levels, self.codebook_size))
        self.window.slot.masked_fill_(fresh, 0)
        self.initialized.fill_(True)

    def _code_lengths(self, residual, directions, assign) -> torch.Tensor:
        """Codes with lengths for ``normalize_codes=False``: k-means codes become the mean of
        their rows; random directions are scaled by the mean projection of their rows. Codes
        without rows get the level's mean projection as their length."""
        K, D = self.codebook_size, self.code_dim
        ones = torch.ones(assign.numel(), device=residual.device)
        n = torch.zeros(K, device=residual.device).index_add_(0, assign, ones)
        proj = (residual * directions.index_select(0, assign)).sum(dim=1)
        fallback = directions * proj.mean().clamp_min(0.0)
        if self.init.startswith("kmeans"):
            sums = torch.zeros(K, D, device=residual.device).index_add_(0, assign, residual)
            code = sums / n.clamp_min(1.0)[:, None]
        else:
            gain = torch.zeros(K, device=residual.device).index_add_(0, assign, proj)
            code = directions * (gain / n.clamp_min(1.0)).clamp_min(0.0)[:, None]
        return torch.where((n > 0)[:, None], code, fallback)

    def _update(self, inputs: List[torch.Tensor], codes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Training-time state update from the (detached) level inputs and their codes;
        ``counts`` is made global in place. Returns the number of dead codes per level seen
        before any restart (from the usage window).

        Tensor ops only, with no branch on a tensor value and no host read, so that
        ``torch.compile(fullgraph=True)`` captures the whole step: the EMA is applied where a
        code got rows (``torch.where``), and the restart runs every forward with its mask
        limited to the forwards where ``num_updates`` is a multiple of ``restart_period``."""
        L, K, D = self.num_levels, self.codebook_size, self.code_dim
        # Restart candidates are formed before the collective so that rank 0's rows travel in
        # the same all-reduce as the counts and the EMA sums (the other ranks add zeros).
        cand = self._restart_candidates(inputs) if self.restart_dead_codes else None
        reduced = [counts]
        if self.ema:
            sums = torch.zeros(L, K, D, device=counts.device)
            for level in range(L):
                rows = l2norm(inputs[level]) if self.normalize_codes else inputs[level]
                sums[level].index_add_(0, codes[:, level], rows)
            reduced.append(sums)
        if cand is not None:
            reduced.append(cand)
        all_reduce_sum_(reduced)
        if self.ema:
            mean = sums / counts.clamp_min(1.0)[..., None]
            cb = self.codebook.data
            if self.normalize_codes:  # NormEMA toward the normalised mean of the normalised rows
                new = l2norm(l2norm(cb) * self.decay + l2norm(mean) * (1.0 - self.decay))
            else:
                new = cb * self.decay + mean * (1.0 - self.decay)
            cb.copy_(torch.where((counts > 0)[..., None], new, cb))
        self.window.push(counts)
        unused = self.window.counts < self.dead_code_threshold
        num_dead = unused.float().sum(dim=-1)
        self.num_updates.add_(1)
        if cand is not None:
            due = torch.remainder(self.num_updates, self.restart_period) == 0  # 0-d, on the device
            # Only codes that have existed for a whole window (and are unused in this batch).
            dead = unused & (self.window.age >= self.dead_code_window) & (counts == 0) & due
            self._restart(cand, dead)
        return num_dead

    def _restart_candidates(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        """fp32 ``[L, K, D]``: for every code, a level input of this batch (unit length when
        codes are unit), chosen by :func:`~bridle.modeling.quantizers.utils.hashed_rows` keyed
        by ``num_updates``; rank 0's on rank 0, zeros on the other ranks (summed across ranks,
        this is rank 0's). Pseudo-random without a generator: the same rows eagerly, compiled
        and after a resume."""
        rows = hashed_rows(inputs[0].shape[0], self.codebook_size, self.num_updates, num_sets=self.num_levels)
        cand = torch.stack([r.index_select(0, i) for r, i in zip(inputs, rows)]).float()  # [L, K, D]
        if self.normalize_codes:
            cand = l2norm(cand)
        if comm.get_rank() != 0:
            cand = torch.zeros_like(cand)
        return cand

    def _restart(self, candidates: torch.Tensor, dead: torch.Tensor) -> None:
        """Replace the ``dead [L, K]`` codes by their ``candidates [L, K, D]`` (identical on
        every rank) and reset their state (their window counts and age start from zero).
        Unit-length candidates are scaled to the level's mean code length. Tensor ops only: with
        no dead code this leaves the state unchanged."""
        # .data: a learned codebook (an nn.Parameter) is written without bumping its autograd
        # version (the forward already used it; a restarted code got no rows, hence no gradient).
        cb = self.codebook.data
        cand = candidates
        if self.normalize_codes:
            cand = cand * cb.float().norm(dim=-1).mean(dim=-1)[:, None, None]
        cb.copy_(torch.where(dead[..., None], cand, cb.float()))
        self.window.reset(dead)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        lead = z.shape[:-1]
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = self._prepare(z)
            if self.training and torch.compiler.is_compiling():
                with torch.no_grad():
                    self._init_in_graph(x.detach())
            elif self.training and not self._initialized:
                with torch.no_grad():
                    self._init_from(x.detach())
            codebook = self._effective_codebook()
            inputs, vectors, codes, top_k = self._lookup(x, codebook)
            # Σ_l [mse(q_l, sg r_l) + beta * mse(sg q_l, r_l)] / L in one pass per level: the
            # two terms have the same value, and scale_grad gives r_l its beta-weighted gradient.
            terms = [F.mse_loss(q, scale_grad(r, self.commitment)) for r, q in zip(inputs, vectors)]
            mse = torch.stack(terms).mean()
            loss = mse + self.commitment * mse.detach()
            # x - (r_L - q_L) = Σ_l q_l: the forward value is the sum of the level vectors.
            quantized = x - (inputs[-1] - vectors[-1]).detach()
            with torch.no_grad():
                counts = self._count(codes)
                if self.training:
                    num_dead = self._update([r.detach() for r in inputs], codes, counts)
                    metrics = usage_metrics(self.window.counts, num_dead)
                else:
                    num_dead = (counts < self.dead_code_threshold).float().sum(dim=-1)
                    metrics = usage_metrics(counts, num_dead)
                metrics["recon_mse"] = terms[-1].detach()  # ||x - Σ q_l||^2 / (M D)
        soft = None
        if top_k is not None:
            soft = top_k.reshape(*lead, self.num_levels, self.soft_codes)
        return QuantizerOutput(
            quantized=quantized.to(z.dtype).reshape(*lead, self.code_dim),
            codes=codes.reshape(*lead, self.num_levels),
            loss=loss,
            metrics=metrics,
            soft_codes=soft,
        )

    def extra_repr(self) -> str:
        return (
            f"num_levels={self.num_levels}, codebook_size={self.codebook_size}, code_dim={self.code_dim}, "
            f"lookup={self.lookup}, ema={self.ema}, decay={self.decay}, init={self.init}, "
            f"dead_code_window={self.dead_code_window}, soft_codes={self.soft_codes}"
        )
