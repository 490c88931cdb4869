"""k-means on the device, vectorised, without host syncs: cosine (spherical) or Euclidean."""

from typing import NamedTuple, Optional

import torch

from .utils import l2norm, sample_rows

__all__ = ["KMeansResult", "fit_kmeans", "cosine_kmeans", "assign_nearest"]


class KMeansResult(NamedTuple):
    centroids: torch.Tensor  # fp32 [K, D] (unit norm for the cosine metric)
    assignments: torch.Tensor  # long [M], index of each row's centroid
    counts: torch.Tensor  # fp32 [K], rows per centroid


def _scores(x: torch.Tensor, centroids: torch.Tensor, cosine: bool) -> torch.Tensor:
    """``[M, K]`` similarity, larger = nearer: ``cos`` (rows already unit) or
    ``x.c - ||c||^2 / 2`` (= ``-||x - c||^2 / 2`` up to a per-row constant)."""
    sims = x @ centroids.t()
    if cosine:
        return sims
    return sims - 0.5 * centroids.pow(2).sum(dim=1)


def assign_nearest(x: torch.Tensor, centroids: torch.Tensor, cosine: bool) -> torch.Tensor:
    """Index of the nearest centroid of every row of ``x`` (cosine or Euclidean)."""
    if cosine:
        return (l2norm(x) @ l2norm(centroids).t()).argmax(dim=1)
    return _scores(x, centroids, cosine=False).argmax(dim=1)


def _sq_dist_to(x: torch.Tensor, sq_norm: torch.Tensor, new: torch.Tensor, cosine: bool) -> torch.Tensor:
    """``[M]`` squared distance of every row to its nearest row of ``new`` (chord distance
    ``2 - 2 cos`` for the cosine metric)."""
    if cosine:
        return (2.0 - 2.0 * (x @ new.t()).max(dim=1).values).clamp_min(0.0)
    d = sq_norm[:, None] - 2.0 * (x @ new.t()) + new.pow(2).sum(dim=1)[None, :]
    return d.min(dim=1).values.clamp_min(0.0)


def _seed(x: torch.Tensor, k: int, cosine: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
    """k-means++-style seeding in doubling rounds (1, 1, 2, 4, ... new centroids per round):
    each round draws distinct rows with probability proportional to their squared distance to
    the nearest centroid so far. ``O(log k)`` rounds, vectorised within a round (no Python loop
    over codes)."""
    m = x.shape[0]
    if m < k:  # not enough rows for distinct seeds
        return x[sample_rows(x, k, generator=generator)[0]]
    sq_norm = x.pow(2).sum(dim=1)
    first = torch.randint(m, (1,), device=x.device, generator=generator)
    centroids = x[first]
    dist = _sq_dist_to(x, sq_norm, centroids, cosine)
    while centroids.shape[0] < k:
        num_new = min(centroids.shape[0], k - centroids.shape[0])
        # Rows that coincide with a centroid weigh 0; if every row does, draw uniformly.
        weight = torch.where(dist.sum() > 0, dist, torch.ones_like(dist))
        # A tiny floor keeps enough non-zero weights for a draw without replacement.
        weight = weight + 1e-12 * weight.max().clamp_min(1e-12)
        new = x[torch.multinomial(weight, num_new, replacement=False, generator=generator)]
        centroids = torch.cat([centroids, new], dim=0)
        dist = torch.minimum(dist, _sq_dist_to(x, sq_norm, new, cosine))
    return centroids


@torch.no_grad()
def fit_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    num_iters: int = 10,
    metric: str = "cosine",
    generator: Optional[torch.Generator] = None,
    seeding: str = "random",
) -> KMeansResult:
    """k-means of the rows of ``x [M, D]`` with ``metric`` ``"cosine"`` (spherical: rows and
    centroids are l2-normalised, a centroid is the normalised mean of its rows) or
    ``"euclidean"``.

    Centroids are seeded with distinct random rows (``seeding="random"``, as the authors and
    BEATs do) or k-means++-style (``seeding="kmeans++"``, :func:`_seed`); each iteration assigns every row to
    its nearest centroid and moves each centroid to the mean of its rows. A centroid left without
    rows is re-seeded at one of the rows worst served by the current centroids, so no cluster
    stays empty while there are enough rows. Zero rows are harmless. Runs in fp32.
    """
    if x.dim() != 2:
        raise ValueError(f"kmeans expects x of shape [M, D]; got {tuple(x.shape)}")
    if num_clusters < 1 or num_iters < 0:
        raise ValueError(f"need num_clusters >= 1 and num_iters >= 0; got {num_clusters}, {num_iters}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean'; got '{metric}'")
    if seeding not in ("random", "kmeans++"):
        raise ValueError(f"seeding must be 'random' or 'kmeans++'; got '{seeding}'")
    cosine = metric == "cosine"
    x = x.float()
    if cosine:
        x = l2norm(x)
    m = x.shape[0]
    ones = torch.ones(m, device=x.device)
    half_sq_norm = 0.0 if cosine else 0.5 * x.pow(2).sum(dim=1)
    if seeding == "random":
        centroids = x[sample_rows(x, num_clusters, generator=generator)[0]]
    else:
        centroids = _seed(x, num_clusters, cosine, generator)
    for _ in range(num_iters):
        best, assign = _scores(x, centroids, cosine).max(dim=1)
        best = best - half_sq_norm  # cos, or -||x - c||^2 / 2
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.zeros(num_clusters, device=x.device).index_add_(0, assign, ones)
        means = l2norm(sums) if cosine else sums / counts.clamp_min(1.0)[:, None]
        # The j-th empty cluster takes the j-th worst-served row.
        empty = counts == 0
        worst = (-best).topk(min(num_clusters, m)).indices
        slot = (empty.long().cumsum(0) - 1).clamp(0, worst.numel() - 1)
        centroids = torch.where(empty[:, None], x[worst[slot]], means)
    assign = _scores(x, centroids, cosine).argmax(dim=1)
    counts = torch.zeros(num_clusters, device=x.device).index_add_(0, assign, ones)
    return KMeansResult(centroids, assign, counts)


def cosine_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    num_iters: int = 10,
    generator: Optional[torch.Generator] = None,
    seeding: str = "random",
) -> KMeansResult:
    """Spherical k-means (:func:`fit_kmeans` with ``metric="cosine"``); centroids are unit vectors."""
    return fit_kmeans(x, num_clusters, num_iters, metric="cosine", generator=generator, seeding=seeding)
