#!/usr/bin/env python
"""Our default RQ (LOOKUP "unit") against an independent re-implementation of the authors' RQ
(their RQBottleneck + VQEmbedding with ema=True, kmeans_init=True, one process), on the same
features: per-level NMI between the two code assignments and per-level perplexity.

The reference below is written fresh from reading the authors' algorithm (never copied):
  * each level l2-normalises its raw residual ``x = r / ||r||``;
  * first forward: spherical k-means (10 iterations) on ``x`` seeded with distinct random rows
    (empty clusters keep their previous centre);
  * lookup: smallest squared Euclidean distance ``||x||^2 + ||w||^2 - 2 x.w`` to the codes ``w``
    (not renormalised after EMA, so slightly shorter than 1);
  * training: ``w <- d w + (1 - d) normalize(mean of the x assigned)`` for codes with rows (no
    renormalisation), *then* ``q = w[code]`` with the updated ``w``;
  * the raw ``r - q`` goes on. (Their unused-code restart runs only under torch.distributed.)

Run as a script for the full-size numbers (4 x 256 x 256 on cold-start-like features):
    OMP_NUM_THREADS=1 .venv/bin/python tests/core/quantizers/rq_reference.py [--levels 4 --codes 256 ...]
"""

import argparse
import math
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F


class AuthorsStyleRQ:
    def __init__(self, levels: int, codes: int, dim: int, decay: float = 0.99, kmeans_iters: int = 10, seed: int = 0):
        self.L, self.K, self.D = levels, codes, dim
        self.decay, self.iters = decay, kmeans_iters
        self.gen = torch.Generator().manual_seed(seed)
        self.w: List[torch.Tensor] = [None] * levels

    def _kmeans(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        if m >= self.K:
            idx = torch.randperm(m, generator=self.gen)[: self.K]
        else:
            idx = torch.randint(m, (self.K,), generator=self.gen)
        means = x[idx]
        for _ in range(self.iters):
            b = (x @ means.t()).argmax(dim=1)
            bins = torch.bincount(b, minlength=self.K)
            new = torch.zeros_like(means).index_add_(0, b, x) / bins.clamp_min(1)[:, None]
            new = F.normalize(new, dim=-1)
            means = torch.where((bins == 0)[:, None], means, new)
        return means

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, train: bool = True) -> torch.Tensor:
        r = z.float()
        codes = []
        for l in range(self.L):
            x = F.normalize(r, dim=-1)
            if self.w[l] is None:
                self.w[l] = self._kmeans(x)
            w = self.w[l]
            d = x.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1)[None] - 2 * x @ w.t()
            c = d.argmin(dim=1)
            if train:
                n = torch.bincount(c, minlength=self.K).float()
                mean = F.normalize(torch.zeros_like(w).index_add_(0, c, x) / n.clamp_min(1)[:, None], dim=-1)
                upd = self.decay * w + (1 - self.decay) * mean
                self.w[l] = w = torch.where((n > 0)[:, None], upd, w)
            r = r - w[c]
            codes.append(c)
        return torch.stack(codes, dim=1)


def nmi(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalised mutual information (arithmetic mean of the entropies, as sklearn's default)."""
    n = a.numel()
    _, ia = torch.unique(a, return_inverse=True)
    _, ib = torch.unique(b, return_inverse=True)
    joint = torch.zeros(int(ia.max()) + 1, int(ib.max()) + 1, dtype=torch.float64)
    joint.index_put_((ia, ib), torch.ones(n, dtype=torch.float64), accumulate=True)
    p = joint / n
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * (p[nz] / (pa[:, None] * pb[None])[nz]).log()).sum().item()
    ha = -(pa[pa > 0] * pa[pa > 0].log()).sum().item()
    hb = -(pb[pb > 0] * pb[pb > 0].log()).sum().item()
    if ha + hb == 0:
        return 1.0
    return max(0.0, mi / (0.5 * (ha + hb)))


def perplexity(codes: torch.Tensor, k: int) -> float:
    p = torch.bincount(codes, minlength=k).double()
    p = p[p > 0] / p.sum()
    return math.exp(-(p * p.log()).sum().item())


class ColdStartFeatures:
    """Cold-start-like tokenizer features, built as the authors' cold start: a patch conv
    (weight xavier-uniform, default random bias) on a random smooth input + the fixed sin-cos
    position table, then a frozen xavier-uniform projection to ``code_dim``. Most of the feature
    energy is positional, as in the real cold start (``positional_share``)."""

    def __init__(self, grid=(16, 8), patch=16, embed_dim=128, code_dim=64, seed=0):
        from bridle.modeling.pos_embed import sincos_pos_embed

        g = torch.Generator().manual_seed(seed)
        self.grid, self.patch = grid, patch
        conv = nn.Conv2d(1, embed_dim, patch, patch)
        with torch.no_grad():
            bound = math.sqrt(6.0 / (patch * patch + embed_dim))
            conv.weight.copy_((torch.rand(conv.weight.shape, generator=g) * 2 - 1) * bound)
            b = 1.0 / patch
            conv.bias.copy_((torch.rand(embed_dim, generator=g) * 2 - 1) * b)
        self.conv = conv.requires_grad_(False)
        self.pos = sincos_pos_embed(embed_dim, grid)
        pb = math.sqrt(6.0 / (embed_dim + code_dim))
        self.proj = (torch.rand(code_dim, embed_dim, generator=g) * 2 - 1) * pb

    @torch.no_grad()
    def positional_share(self, items: int = 8) -> float:
        """Fraction of the features' energy in their positional component (mean over items)."""
        f = self.sample(items, 123).reshape(items, -1, self.proj.shape[0])
        pos = f.mean(dim=0, keepdim=True)
        return (pos.pow(2).sum() * items / f.pow(2).sum()).item()

    @torch.no_grad()
    def sample(self, items: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        h, w = self.grid[0] * self.patch, self.grid[1] * self.patch
        # smooth random "spectrogram" of std ~0.5 (a normalised fbank's scale): low-resolution
        # noise upsampled, plus fine noise; the positional part then holds ~80% of the energy
        low = torch.randn(items, 1, self.grid[0] * 2, self.grid[1] * 2, generator=g)
        x = 0.5 * F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        x = x + 0.15 * torch.randn(items, 1, h, w, generator=g)
        tokens = self.conv(x).flatten(2).transpose(1, 2) + self.pos  # [B, N, E]
        return (tokens @ self.proj.t()).reshape(-1, self.proj.shape[0])


class Clustered:
    """Gaussian clusters around random centres of random lengths (the quantizer tests' data)."""

    def __init__(self, dim, clusters=64, noise=0.3, scale=1.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.c = torch.randn(clusters, dim, generator=g) / math.sqrt(dim) * 3.0 * scale
        self.s = torch.rand(clusters, 1, generator=g) * 1.5 + 0.5
        self.noise, self.dim, self.scale = noise, dim, scale

    def sample(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(self.c.shape[0], (n,), generator=g)
        return (
            self.c[i] * self.s[i]
            + self.noise * self.scale * torch.randn(n, self.dim, generator=g) / math.sqrt(self.dim) * 3
        )


def compare(features, levels, codes, dim, steps, rows_per_step, test_rows, seed_ours=0, seed_theirs=1):
    """Train both (init on the first batch, then ``steps`` EMA forwards on the same batches),
    then code a held-out set. Returns per-level NMI(ours, theirs), NMI(theirs, theirs with
    another seed), the perplexities, and the code agreement of ours with the reference started
    from our initial codebook."""
    from bridle.modeling.quantizers import ResidualQuantizer

    torch.manual_seed(seed_ours)
    ours = ResidualQuantizer(levels, codes, dim).train()  # the defaults: LOOKUP unit, INIT kmeans
    theirs = AuthorsStyleRQ(levels, codes, dim, seed=seed_theirs)
    theirs2 = AuthorsStyleRQ(levels, codes, dim, seed=seed_theirs + 100)
    # the same algorithm from our initial codebook: isolates the lookup / EMA from k-means luck
    shared = AuthorsStyleRQ(levels, codes, dim, seed=seed_theirs)
    for step in range(steps):
        x = features(rows_per_step, step)
        if step == 0:
            ours.init_codebook(x)
            shared.w = list(ours.get_codebooks().unbind(0))
        ours(x)
        theirs(x)
        theirs2(x)
        shared(x)
    test = features(test_rows, 10_000)
    ours.eval()
    with torch.no_grad():
        a = ours(test).codes
    b = theirs(test, train=False)
    c = theirs2(test, train=False)
    e = shared(test, train=False)
    return {
        "agree_shared_init": [(a[:, l] == e[:, l]).float().mean().item() for l in range(levels)],
        "nmi_ours_theirs": [nmi(a[:, l], b[:, l]) for l in range(levels)],
        "nmi_theirs_theirs": [nmi(c[:, l], b[:, l]) for l in range(levels)],
        "ppl_ours": [perplexity(a[:, l], codes) for l in range(levels)],
        "ppl_theirs": [perplexity(b[:, l], codes) for l in range(levels)],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--codes", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--embed-dim", type=int, default=768)
    p.add_argument("--grid", type=int, nargs=2, default=[64, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--items", type=int, default=16, help="items per step (x grid patches rows)")
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n_patch = args.grid[0] * args.grid[1]
    for name, make in (
        ("cold-start-like", lambda s: ColdStartFeatures(tuple(args.grid), 16, args.embed_dim, args.dim, seed=s)),
        ("clustered", lambda s: Clustered(args.dim, clusters=4 * args.codes, seed=s)),
    ):
        for s in range(args.seeds):
            feats = make(s)
            if name == "cold-start-like":
                print(f"cold-start-like features: positional share of the energy {feats.positional_share():.2f}")
            if name == "clustered":
                fn = lambda n, seed: feats.sample(n * n_patch, seed)  # noqa: E731
            else:
                fn = feats.sample
            r = compare(
                lambda n, seed: fn(n, seed),
                args.levels,
                args.codes,
                args.dim,
                args.steps,
                args.items,
                4 * args.items,
                seed_ours=s,
                seed_theirs=s + 1,
            )
            fmt = lambda v: "[" + ", ".join(f"{x:.3f}" for x in v) + "]"  # noqa: E731
            ratio = [a / b for a, b in zip(r["ppl_ours"], r["ppl_theirs"])]
            print(
                f"{name} seed {s}: agreement from a shared init {fmt(r['agree_shared_init'])}\n"
                f"    NMI ours~theirs {fmt(r['nmi_ours_theirs'])}  theirs~theirs(other seed) "
                f"{fmt(r['nmi_theirs_theirs'])}\n    perplexity ours {fmt(r['ppl_ours'])} theirs "
                f"{fmt(r['ppl_theirs'])} ratio {fmt(ratio)}"
            )


if __name__ == "__main__":
    main()
