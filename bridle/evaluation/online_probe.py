"""Online probes during pretraining (``TEST.ONLINE_PROBE``): is the representation getting better
while the encoder trains, not only after separate downstream runs?

Every ``PERIOD`` iterations of an encoder phase (encoder_cold, encoder, joint) and at the phase end,
:class:`OnlineProbe` (a training-loop hook) takes the frozen encoder's pooled features of a small
labelled set (a train and a val part, built from ``TEST.ONLINE_PROBE.TRAIN``/``VAL`` with ``OPTS``
applied to the run's config, mode "eval": a regular dataset even when training reads shards) and logs

- ``probe/knn_top1``: val top-1 of a cosine kNN classifier on the train part (k = ``K``, votes
  weighted by exp(similarity / 0.07), Wu et al. 2018, arXiv 1805.01978, as DINO's eval_knn.py);
- ``probe/linear_top1``: val top-1 of a closed-form linear probe on standardised features: ridge
  regression to one-hot targets, lambda chosen on a fixed grid by the train part's exact
  leave-one-out accuracy (``probe/linear_lambda``), or ``PROBE`` "logistic": multinomial
  logistic regression, a few LBFGS steps, fixed L2;
- ``probe/effective_rank``: exp of the entropy of the normalised singular values of the pooled
  features of both parts (RankMe, Garrido et al. 2023, arXiv 2210.02885);

and, on the first ``LABEL_FREE_ITEMS`` val items (held out from pretraining; labels unused):

- ``probe/masked_acc``: the model's masked-token accuracy (decoder's argmax = the tokenizer's
  code, every level) under masks drawn once from the probe's own generator (``SEED``), the same at
  every period; its targets are the phase's tokenizer's codes, so it compares within a phase;
- ``probe/perplexity/l<level>``: exp of the entropy of the tokenizer's code histogram per level;

plus ``probe/seconds`` (process CPU time of the probe, for the overhead).

The hook never changes training: python / numpy / torch (CPU and CUDA) RNG states are saved before
and restored after it, its loader is its own (``num_workers=0``, its own generator), the model is
switched to eval mode and back, and everything runs under ``torch.no_grad``. With several ranks
every rank computes the same numbers from the same (replicated) weights and the same items; no
collective is needed, and the numbers equal those of one process.
"""

import logging
import math
import resource
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from bridle.config.config import ConfigValueError
from bridle.engine.train_loop import HookBase
from bridle.utils.seed import derive_seed, rng_state, set_rng_state

logger = logging.getLogger("bridle.online_probe")

ENCODER_PHASES = ("encoder", "joint")  # PretrainTrainer.phase values (encoder_cold is "encoder")
PROBES = ("ridge", "logistic")
POOLS = ("mean", "cls")
RIDGE_GRID = tuple(10.0**e for e in range(-3, 5))  # times the mean squared singular value / n
KNN_TEMPERATURE = 0.07
LOGISTIC_L2 = 1e-3
LOGISTIC_STEPS = 50


def check_config(cfg) -> None:
    """One-line user errors for bad TEST.ONLINE_PROBE values (before any compute)."""
    p = cfg.TEST.ONLINE_PROBE
    errors = []
    if int(p.PERIOD) < 0:
        errors.append(f"TEST.ONLINE_PROBE.PERIOD = {p.PERIOD}: expected iterations >= 0 (0 = only at the phase end)")
    if int(p.K) < 1:
        errors.append(f"TEST.ONLINE_PROBE.K = {p.K}: expected a number of neighbours >= 1")
    if int(p.MAX_ITEMS) < 0:
        errors.append(f"TEST.ONLINE_PROBE.MAX_ITEMS = {p.MAX_ITEMS}: expected an integer >= 0 (0 = all)")
    if int(p.LABEL_FREE_ITEMS) < 0:
        errors.append(f"TEST.ONLINE_PROBE.LABEL_FREE_ITEMS = {p.LABEL_FREE_ITEMS}: expected an integer >= 0")
    if str(p.PROBE) not in PROBES:
        errors.append(f"TEST.ONLINE_PROBE.PROBE = {p.PROBE!r}: expected one of {list(PROBES)}")
    if str(p.POOL) not in POOLS:
        errors.append(f"TEST.ONLINE_PROBE.POOL = {p.POOL!r}: expected one of {list(POOLS)}")
    if int(p.LAYER) < 0:
        errors.append(f"TEST.ONLINE_PROBE.LAYER = {p.LAYER}: expected 0 (final output) or a block number >= 1")
    if len(p.OPTS) % 2:
        errors.append(f"TEST.ONLINE_PROBE.OPTS: expected KEY VALUE pairs; got {len(p.OPTS)} words")
    if errors:
        raise ConfigValueError("Invalid config: " + "; ".join(errors) + ".")
    if p.ENABLED and int(p.PERIOD) > 0 and int(p.PERIOD) % int(cfg.LOG_PERIOD):
        logger.warning(
            f"TEST.ONLINE_PROBE.PERIOD {p.PERIOD} is not a multiple of LOG_PERIOD {cfg.LOG_PERIOD}: each probe's "
            "numbers are written with the next log boundary's iteration in metrics.json."
        )


def probe_config(cfg):
    """The run's config with TEST.ONLINE_PROBE.OPTS applied: what builds the probe set."""
    c = cfg.clone()
    c.defrost()
    if cfg.TEST.ONLINE_PROBE.OPTS:
        c.merge_from_list(list(cfg.TEST.ONLINE_PROBE.OPTS))
    return c


def build_probe_datasets(cfg):
    """(train part, val part) of the probe set, mode "eval", as regular datasets."""
    from torch.utils.data import IterableDataset

    from bridle.data.build import build_dataset

    p = cfg.TEST.ONLINE_PROBE
    c = probe_config(cfg)
    parts = []
    for split, name, fallback in (("train", p.TRAIN, "DATASETS.TRAIN"), ("val", p.VAL, "DATASETS.VAL")):
        entry = str(name) or str(c.DATASETS[split.upper()])
        if not entry:
            raise ConfigValueError(
                f"TEST.ONLINE_PROBE.{split.upper()} is empty and so is {fallback} (after TEST.ONLINE_PROBE.OPTS): "
                "expected the DATASET entry of the probe set's labelled "
                f"{split} part."
            )
        ds = build_dataset(c, entry, split, "eval")
        if isinstance(ds, IterableDataset):
            raise ConfigValueError(
                f"TEST.ONLINE_PROBE.{split.upper()} '{entry}' is a stream (shards); expected a regular (indexable) "
                "dataset for the probe set, e.g. the downstream data's entry."
            )
        parts.append(ds)
    return parts[0], parts[1]


# ---------------------------------------------------------------------------- the numbers
def knn_top1(
    train: torch.Tensor, ytrain: torch.Tensor, val: torch.Tensor, yval: torch.Tensor, k: int, num_classes: int
) -> float:
    """Val top-1 of a cosine kNN with exp(sim / T)-weighted votes (Wu et al. 2018)."""
    a, b = F.normalize(train.double(), dim=1), F.normalize(val.double(), dim=1)
    sim = b @ a.T  # [V, N]
    k = min(int(k), a.shape[0])
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(b.shape[0], num_classes, dtype=torch.float64)
    votes.scatter_add_(1, ytrain[idx], (top / KNN_TEMPERATURE).exp())
    return float((votes.argmax(1) == yval).double().mean())


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> List[torch.Tensor]:
    mu, sd = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-6)
    return [(t - mu) / sd for t in (train, *others)]


def ridge_probe(
    train: torch.Tensor, ytrain: torch.Tensor, val: torch.Tensor, yval: torch.Tensor, num_classes: int
) -> Tuple[float, float]:
    """(val top-1, lambda): ridge regression with intercept to one-hot targets on standardised
    features; lambda (relative to the mean squared singular value) from :data:`RIDGE_GRID` by the
    exact leave-one-out accuracy on the train part (hat-matrix identity, one SVD for the grid)."""
    x, v = (t.double() for t in _standardise(train.double(), val.double()))
    n = x.shape[0]
    y = F.one_hot(ytrain, num_classes).double()
    ym = y.mean(0)
    u, s, vt = torch.linalg.svd(x, full_matrices=False)  # x is centred: the intercept is ym
    s2 = s * s
    scale = float(s2.mean()) if s2.numel() else 1.0
    uty = u.T @ (y - ym)
    best = None
    for rel in RIDGE_GRID:
        lam = rel * scale
        shrink = s2 / (s2 + lam)
        fit = ym + u @ (shrink[:, None] * uty)  # in-sample predictions
        h = 1.0 / n + (u * u) @ shrink  # leverages (intercept included)
        loo = (fit - h[:, None] * y) / (1.0 - h[:, None]).clamp_min(1e-9)  # leave-one-out predictions
        acc = float((loo.argmax(1) == ytrain).double().mean())
        if best is None or acc >= best[0]:  # ties: the larger lambda
            best = (acc, rel, lam)
    _, rel, lam = best
    w = vt.T @ ((s / (s2 + lam))[:, None] * uty)
    pred = (v @ w + ym).argmax(1)
    return float((pred == yval).double().mean()), float(rel)


def logistic_probe(
    train: torch.Tensor, ytrain: torch.Tensor, val: torch.Tensor, yval: torch.Tensor, num_classes: int
) -> float:
    """Val top-1 of multinomial logistic regression (standardised features, L2 ``LOGISTIC_L2``,
    ``LOGISTIC_STEPS`` LBFGS iterations from zero: deterministic, no random init)."""
    x, v = (t.double() for t in _standardise(train.double(), val.double()))
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=LOGISTIC_STEPS, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, ytrain) + LOGISTIC_L2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((v @ w + b).argmax(1) == yval).double().mean())


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the singular values normalised to sum 1 (RankMe, arXiv 2210.02885)."""
    s = torch.linalg.svdvals(features.double())
    p = s / s.sum().clamp_min(1e-12) + 1e-12
    return float(torch.exp(-(p * p.log()).sum()))


def perplexities(codes: torch.Tensor, codebook_size: int) -> List[float]:
    """codes [..., L] -> per level exp(entropy) of the code histogram."""
    flat = codes.reshape(-1, codes.shape[-1]).long().cpu()
    out = []
    for level in range(flat.shape[1]):
        counts = torch.bincount(flat[:, level], minlength=codebook_size).double()
        p = counts[counts > 0] / counts.sum()
        out.append(float(torch.exp(-(p * p.log()).sum())))
    return out


def process_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------- the hook
def _labels(batch: dict) -> torch.Tensor:
    y = batch["label"]
    return (y.argmax(1) if y.ndim == 2 else y).long()  # one-hot / multi-hot targets: the class index


class OnlineProbe(HookBase):
    """The training-loop hook of ``TEST.ONLINE_PROBE`` (module docstring). Registered by the
    pretraining trainers of encoder phases; the results go to the storage (metrics.json,
    TensorBoard) and :attr:`last_results`."""

    def __init__(self, cfg) -> None:
        check_config(cfg)
        p = cfg.TEST.ONLINE_PROBE
        self.cfg = cfg
        self.period = int(p.PERIOD)
        self.k = int(p.K)
        self.max_items = int(p.MAX_ITEMS)
        self.probe = str(p.PROBE)
        self.layer = int(p.LAYER)
        self.pool = str(p.POOL)
        self.label_free_items = int(p.LABEL_FREE_ITEMS)
        self.seed = derive_seed(int(p.SEED), "online_probe")
        self.batch_size = int(cfg.TEST.BATCH_SIZE_PER_GPU)
        saved = rng_state()  # building a dataset may draw (a split permutation): training's draws stay the same
        try:
            self.train_set, self.val_set = build_probe_datasets(cfg)
        finally:
            set_rng_state(saved)
        self._batches: Optional[Dict[str, list]] = None
        self._masks: Optional[torch.Tensor] = None
        self.last_results: Optional[Dict[str, float]] = None
        self.history: List[Tuple[int, Dict[str, float]]] = []

    # -- data, read once (its own loader and generator, no workers) and kept on the host
    def _read(self, dataset) -> list:
        from torch.utils.data import DataLoader, Subset

        from bridle.data.items import skip_none_collate

        n = len(dataset) if self.max_items <= 0 else min(len(dataset), self.max_items)
        loader = DataLoader(
            Subset(dataset, range(n)),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=0,
            collate_fn=skip_none_collate,
            generator=torch.Generator().manual_seed(self.seed),
        )
        batches = [b for b in loader if not b.get("empty", False) and "input" in b]
        if not batches:
            raise RuntimeError(f"TEST.ONLINE_PROBE: the probe set part {type(dataset).__name__} has no readable item.")
        return [{k: v for k, v in b.items() if isinstance(v, torch.Tensor)} for b in batches]

    def _data(self) -> Dict[str, list]:
        if self._batches is None:
            self._batches = {"train": self._read(self.train_set), "val": self._read(self.val_set)}
        return self._batches

    # -- features
    def _inputs(self, batch: dict, dataset) -> torch.Tensor:
        from bridle.data.batch import device_transform_of, prepare_batch

        model_input = {k: v for k, v in batch.items() if k in ("input", "num_samples")}  # as features.py
        return prepare_batch(model_input, self.trainer.device, device_transform_of(dataset))["input"]

    def _pooled(self, model, x: torch.Tensor) -> torch.Tensor:
        enc = model.encoder
        if self.layer:
            tokens = enc(x, num_blocks=self.layer)
            tokens = F.layer_norm(tokens, tokens.shape[-1:], eps=1e-6)
        else:
            tokens = enc(x)
        f = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)
        return f.float().cpu()

    def _features(self, model, part: str, dataset) -> Tuple[torch.Tensor, torch.Tensor, list]:
        feats, labels, inputs = [], [], []
        for batch in self._data()[part]:
            x = self._inputs(batch, dataset)
            with self.trainer.autocast():
                feats.append(self._pooled(model, x))
            labels.append(_labels(batch))
            inputs.append(x)
        return torch.cat(feats), torch.cat(labels), inputs

    # -- label-free signals
    def _label_free(self, model, inputs: Sequence[torch.Tensor]) -> Dict[str, float]:
        from bridle.modeling.bridle_model import masked_ids
        from bridle.modeling.vit import gather_tokens, visible_ids

        x = torch.cat(list(inputs))[: self.label_free_items]
        if x.shape[0] == 0:
            return {}
        if self._masks is None or self._masks.shape[0] != x.shape[0]:
            # drawn once from the probe's own generator: every period sees the same masks
            gen = torch.Generator().manual_seed(self.seed)
            self._masks = model.mask_generator(x.shape[0], device=torch.device("cpu"), generator=gen).bool()
        n_mask = int(model.num_masked)
        correct, total, codes_all = 0.0, 0, []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start : start + self.batch_size]
            mask = self._masks[start : start + self.batch_size].to(xb.device)
            with self.trainer.autocast():
                codes = model.targets(xb).codes  # [B, N, L]
                ids_keep = visible_ids(mask, n_mask)
                ids_mask = masked_ids(mask, n_mask)
                latent = model.encoder(xb, ids_keep)
                logits = model.decoder(latent, ids_keep, ids_mask)
            b = xb.shape[0]
            logits = logits.float().reshape(b, n_mask, model.num_levels, model.codebook_size)
            target = gather_tokens(codes, ids_mask)
            correct += float((logits.argmax(-1) == target).double().sum())
            total += target.numel()
            codes_all.append(codes.cpu())
        out = {"masked_acc": correct / max(1, total)}
        for level, ppl in enumerate(perplexities(torch.cat(codes_all), model.codebook_size)):
            out[f"perplexity/l{level}"] = ppl
        return out

    # -- one probe
    def compute(self) -> Dict[str, float]:
        """The probe's numbers for the current weights; leaves every RNG, the model's train/eval
        mode and the autograd state as they were."""
        t0 = process_seconds()
        model = self.trainer.model_without_ddp
        was_training = model.training
        saved = rng_state()
        try:
            model.eval()
            with torch.no_grad():
                ftr, ytr, _ = self._features(model, "train", self.train_set)
                fva, yva, xva = self._features(model, "val", self.val_set)
                classes = int(max(int(ytr.max()), int(yva.max())) + 1)
                res = {"knn_top1": knn_top1(ftr, ytr, fva, yva, self.k, classes)}
                if self.probe == "ridge":
                    res["linear_top1"], res["linear_lambda"] = ridge_probe(ftr, ytr, fva, yva, classes)
                else:
                    res["linear_top1"] = logistic_probe(ftr, ytr, fva, yva, classes)
                res["effective_rank"] = effective_rank(torch.cat([ftr, fva]))
                if self.label_free_items > 0:
                    res.update(self._label_free(model, xva))
        finally:
            model.train(was_training)
            set_rng_state(saved)
        res["seconds"] = process_seconds() - t0
        return res

    def _run(self) -> None:
        res = self.compute()
        for k, v in res.items():
            if math.isfinite(v):
                self.trainer.storage.put_scalar(f"probe/{k}", float(v))
        self.last_results = res
        done = min(self.trainer.iter + 1, self.trainer.max_iter)  # iterations done (after_train: iter = max_iter)
        self.history.append((done, res))
        logger.info(
            f"Online probe at iteration {done}: kNN {res['knn_top1']:.3f}, linear "
            f"{res['linear_top1']:.3f}, effective rank {res['effective_rank']:.1f}"
            + (f", masked acc {res['masked_acc']:.3f}" if "masked_acc" in res else "")
            + f" ({res['seconds']:.1f} CPU s)"
        )

    def after_step(self) -> None:
        nxt = self.trainer.iter + 1
        if self.period > 0 and nxt % self.period == 0 and nxt != self.trainer.max_iter:
            self._run()

    def after_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:  # the phase ended normally (not a stop request)
            self._run()


def build_online_probe(cfg, phase: str) -> Optional[OnlineProbe]:
    """The hook for a pretraining trainer of ``phase``, or None (disabled, or a tokenizer phase)."""
    if not cfg.TEST.ONLINE_PROBE.ENABLED or phase not in ENCODER_PHASES:
        return None
    return OnlineProbe(cfg)
