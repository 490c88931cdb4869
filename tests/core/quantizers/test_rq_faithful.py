"""The default RQ (LOOKUP "unit") against its equations, written out below, on small inputs.

Reference, written here from the equations: with r_1 = z (raw),
    level l:  ĉ_l = argmin_k || r_l / ||r_l|| - w_lk ||   over unit codes w_lk
              q_l = w_l,ĉ_l (the unit code itself),  r_{l+1} = r_l - q_l (raw)
    z_q = z + sg(Σ q_l - z),  loss = mean_l [ mse(sg r_l, q_l) + β mse(r_l, sg q_l) ]
    EMA (codes with rows): w <- normalize(d w + (1 - d) normalize(mean of normalized rows))
    k-means init: spherical k-means on each level's normalised residuals, random-row seeds.
"""

import pytest
import torch
import torch.nn.functional as F

from bridle.modeling.quantizers import ResidualQuantizer
from qz_helpers import ClusteredData, single_thread  # noqa: F401  (autouse fixture)


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def reference_chain(z, codebooks):
    """codes [M, L], level inputs [r_1..r_L], level vectors [q_1..q_L] by those equations."""
    r = z.clone()
    codes, inputs, vectors = [], [], []
    for w in codebooks:
        d = torch.cdist(unit(r), w, compute_mode="donot_use_mm_for_euclid_dist")  # distance to unit codes
        c = d.argmin(dim=1)
        q = w[c]
        codes.append(c)
        inputs.append(r)
        vectors.append(q)
        r = r - q
    return torch.stack(codes, 1), inputs, vectors


def _quantizer_with_codes(L=3, K=5, D=6, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    q = ResidualQuantizer(L, K, D, restart_dead_codes=False, **kw)
    q.init_codebook(torch.randn(64, D, generator=g))  # marks it initialised
    with torch.no_grad():
        q.codebook.copy_(unit(torch.randn(L, K, D, generator=g)))
    return q


def test_codes_output_and_loss_follow_the_equations():
    q = _quantizer_with_codes().eval()
    assert q.lookup == "unit" and q.normalize_codes and not q.normalize_input
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, 6, generator=g) * 1.7  # raw scale matters: codes have length 1
    cb = q.get_codebooks()
    torch.testing.assert_close(cb.norm(dim=-1), torch.ones(3, 5))
    codes, inputs, vectors = reference_chain(z, cb)
    out = q(z)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(out.quantized, sum(vectors))
    ref_loss = torch.stack([F.mse_loss(v, r) * 1.25 for r, v in zip(inputs, vectors)]).mean()
    torch.testing.assert_close(out.loss, ref_loss)
    torch.testing.assert_close(out.metrics["recon_mse"], F.mse_loss(sum(vectors), z))
    # the residual passed on is raw: level 2's input is z - q_1, not normalize(z) - q_1
    assert not torch.allclose(inputs[1], unit(z) - vectors[0])


def test_gradients_are_straight_through_and_commitment_on_raw_residuals():
    q = _quantizer_with_codes().train()
    q.ema = False  # (no state change needed for the gradient check)
    z = (torch.randn(30, 6, generator=torch.Generator().manual_seed(2)) * 2).requires_grad_(True)
    out = q(z)
    g = torch.randn_like(out.quantized)
    (gz,) = torch.autograd.grad((out.quantized * g).sum(), z, retain_graph=True)
    torch.testing.assert_close(gz, g)
    (gl,) = torch.autograd.grad(out.loss, z)
    _, inputs, vectors = reference_chain(z.detach(), q.get_codebooks())
    n = z.numel()
    expected = 0.25 * sum(2 * (r - v) / n for r, v in zip(inputs, vectors)) / 3
    torch.testing.assert_close(gl, expected)


def test_ema_step_moves_unit_codes_toward_the_normalised_mean_of_normalised_rows():
    q = _quantizer_with_codes(decay=0.8).train()
    before = q.get_codebooks()
    z = torch.randn(200, 6, generator=torch.Generator().manual_seed(3)) * 3
    codes, inputs, _ = reference_chain(z, before)
    out = q(z)
    assert torch.equal(out.codes, codes)
    after = q.get_codebooks()
    for level in range(3):
        rows = unit(inputs[level])
        for k in range(5):
            mine = codes[:, level] == k
            if mine.any():
                target = unit(rows[mine].mean(0))
                torch.testing.assert_close(after[level, k], unit(0.8 * before[level, k] + 0.2 * target))
            else:
                torch.testing.assert_close(after[level, k], before[level, k])
    torch.testing.assert_close(after.norm(dim=-1), torch.ones(3, 5))


def test_kmeans_init_is_spherical_on_each_levels_residuals_seeded_with_rows():
    data = ClusteredData(8, num_clusters=6, noise=0.05)
    x = data.sample(300, 0)
    torch.manual_seed(0)
    q = ResidualQuantizer(2, 6, 8, kmeans_iters=0)
    q.init_codebook(x)
    cb = q.get_codebooks()
    codes, inputs, _ = reference_chain(x, cb)
    for level in range(2):
        rows = unit(inputs[level])
        # no iteration: every code is one of the level's normalised residual rows, all distinct
        d = torch.cdist(cb[level], rows, compute_mode="donot_use_mm_for_euclid_dist")
        assert (d.min(dim=1).values < 1e-5).all()
        assert d.argmin(dim=1).unique().numel() == 6
    # many iterations: a fixed point of spherical k-means (code = normalised mean of its rows)
    torch.manual_seed(0)
    q = ResidualQuantizer(2, 6, 8, kmeans_iters=30)
    q.init_codebook(x)
    cb = q.get_codebooks()
    codes, inputs, _ = reference_chain(x, cb)
    for level in range(2):
        rows = unit(inputs[level])
        for k in range(6):
            mine = codes[:, level] == k
            assert mine.any()
            torch.testing.assert_close(cb[level, k], unit(rows[mine].mean(0)), atol=1e-4, rtol=0)


def test_level_one_depends_on_direction_only_deeper_levels_on_scale():
    q = _quantizer_with_codes(L=3, K=8, D=6).eval()
    z = torch.randn(500, 6, generator=torch.Generator().manual_seed(4))
    a, b = q(z).codes, q(10 * z).codes
    assert torch.equal(a[:, 0], b[:, 0])
    assert (a[:, 1:] != b[:, 1:]).any()
    codes, _, _ = reference_chain(10 * z, q.get_codebooks())
    assert torch.equal(b, codes)


def test_legacy_lookups_keep_their_names():
    e = ResidualQuantizer(2, 4, 3, lookup="euclidean")
    c = ResidualQuantizer(2, 4, 3, lookup="cosine")
    assert not e.normalize_codes and not c.normalize_codes and e.metric == "euclidean" and c.metric == "cosine"
    with pytest.raises(ValueError, match="INIT"):
        ResidualQuantizer(2, 4, 3, init="kmeans+")
    assert ResidualQuantizer(2, 4, 3, init="kmeans++").init == "kmeans++"
