"""Training behaviour: straight-through, EMA, learned codebooks, init, restart, residual
levels, fp32 under autocast, zero vectors."""

import pytest
import torch
import torch.nn.functional as F

from bridle.modeling.quantizers import ResidualQuantizer, VectorQuantizer, cosine_kmeans, fit_kmeans, l2norm
from qz_helpers import ClusteredData, per_level_errors, single_thread  # noqa: F401  (autouse fixture)


def test_straight_through_gradient_rq():
    torch.manual_seed(0)
    q = ResidualQuantizer(3, 16, 8).train()
    z = torch.randn(4, 5, 8, requires_grad=True)
    out = q(z)
    g = torch.randn_like(out.quantized)
    (out.quantized * g).sum().backward()
    assert torch.equal(z.grad, g)


def test_straight_through_gradient_vq_goes_through_the_normalisation():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 8).train()
    z = torch.randn(4, 5, 8, requires_grad=True)
    out = q(z)
    g = torch.randn_like(out.quantized)
    (out.quantized * g).sum().backward()
    (expected,) = torch.autograd.grad(l2norm(z), z, g)
    torch.testing.assert_close(z.grad, expected)


def test_commitment_gradient_pulls_inputs_toward_their_codes():
    torch.manual_seed(0)
    q = ResidualQuantizer(2, 16, 8, commitment=0.25).train()
    z = torch.randn(64, 8)
    q(z)  # initialise
    z = z.clone().requires_grad_(True)
    out = q(z)
    out.loss.backward()
    # loss = mean_l [mse(q_l, sg r_l) + beta mse(sg q_l, r_l)], r_l = z - Σ_{j<l} sg q_j
    cb = q.get_codebooks()
    r1 = z.detach()
    r2 = r1 - cb[0][out.codes[:, 0]]
    q2 = cb[1][out.codes[:, 1]]
    n = z.numel()
    expected = 0.25 * (2 * (r1 - cb[0][out.codes[:, 0]]) / n + 2 * (r2 - q2) / n) / 2
    torch.testing.assert_close(z.grad, expected)


def test_rq_ema_moves_codes_toward_the_mean_of_their_rows():
    torch.manual_seed(0)
    data = ClusteredData(8, num_clusters=4)
    q = ResidualQuantizer(1, 8, 8, lookup="euclidean", decay=0.5, restart_dead_codes=False).train()
    q.init_codebook(data.sample(256, 0))
    old = q.get_codebooks()[0]
    x = data.sample(256, 1)
    out = q(x)
    new = q.get_codebooks()[0]
    codes = out.codes[:, 0]
    used = torch.bincount(codes, minlength=8) > 0
    assert used.sum() >= 2
    for k in range(8):
        if used[k]:
            mean = x[codes == k].mean(dim=0)
            torch.testing.assert_close(new[k], 0.5 * old[k] + 0.5 * mean)
            assert (new[k] - mean).norm() < (old[k] - mean).norm() or torch.allclose(old[k], mean)
        else:
            torch.testing.assert_close(new[k], old[k])
    # usage = the counts of the window (one forward so far)
    counts = torch.bincount(codes, minlength=8).float()
    torch.testing.assert_close(q.usage[0], counts)
    assert int(q.num_updates) == 1


def test_vq_norm_ema_update_formula():
    torch.manual_seed(0)
    data = ClusteredData(8, num_clusters=4)
    q = VectorQuantizer(8, 8, decay=0.9, restart_dead_codes=False).train()
    q.init_codebook(data.sample(256, 0))
    old = q.get_codebooks()[0]
    x = data.sample(256, 1)
    out = q(x)
    new = q.get_codebooks()[0]
    codes = out.codes[:, 0]
    counts = torch.bincount(codes, minlength=8).float()
    xn = l2norm(x)
    for k in range(8):
        if counts[k] > 0:
            target = l2norm(xn[codes == k].mean(dim=0))
            torch.testing.assert_close(new[k], l2norm(0.9 * old[k] + 0.1 * target))
            assert torch.dot(new[k], target) >= torch.dot(old[k], target) - 1e-6
        else:
            torch.testing.assert_close(new[k], old[k])
    torch.testing.assert_close(new.norm(dim=-1), torch.ones(8))
    torch.testing.assert_close(q.usage, counts[None])


@pytest.mark.parametrize("kind", ["vq", "rq"])
def test_learned_codebook_is_trained_by_the_loss(kind):
    torch.manual_seed(0)
    data = ClusteredData(8, num_clusters=8)
    if kind == "vq":
        q = VectorQuantizer(16, 8, ema=False, init="uniform")
    else:
        q = ResidualQuantizer(2, 16, 8, ema=False, init="uniform")
    q.train()
    assert isinstance(q.codebook, torch.nn.Parameter)
    opt = torch.optim.Adam(q.parameters(), lr=0.02)
    x = data.sample(512, 0)
    first = None
    for step in range(40):
        out = q(x)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
            first = out.loss.item()
        opt.step()
    assert out.loss.item() < 0.7 * first


def test_kmeans_recovers_separated_clusters():
    torch.manual_seed(0)
    data = ClusteredData(16, num_clusters=8, noise=0.01)
    x = data.sample(1024, 0)
    for metric in ("cosine", "euclidean"):
        res = fit_kmeans(x, 8, 10, metric=metric, seeding="kmeans++")
        assert res.centroids.shape == (8, 16) and res.assignments.shape == (1024,)
        assert res.counts.sum().item() == 1024
        truth = l2norm(data.centers * data.scales)
        sims = l2norm(res.centroids) @ truth.t()
        # every true cluster has a centroid pointing at it
        assert (sims.max(dim=0).values > 0.99).all(), metric
    unit = cosine_kmeans(x, 8).centroids
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(8))
    # fewer rows than clusters, and zero rows: no NaN
    tiny = torch.cat([torch.zeros(2, 16), torch.randn(3, 16)])
    for metric in ("cosine", "euclidean"):
        for seeding in ("random", "kmeans++"):
            res = fit_kmeans(tiny, 8, 5, metric=metric, seeding=seeding)
            assert torch.isfinite(res.centroids).all()


def test_kmeans_random_seeding_starts_from_distinct_rows():
    # INIT "kmeans" (the authors'): the seeds are distinct rows of the batch.
    x = torch.randn(50, 6)
    g = torch.Generator().manual_seed(3)
    res = fit_kmeans(x, 10, 0, metric="euclidean", seeding="random", generator=g)
    d = torch.cdist(res.centroids, x, compute_mode="donot_use_mm_for_euclid_dist")
    hit = d.argmin(dim=1)
    assert (d.min(dim=1).values < 1e-6).all() and hit.unique().numel() == 10
    unit = fit_kmeans(x, 10, 0, metric="cosine", seeding="random", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(unit.centroids, l2norm(res.centroids))
    with pytest.raises(ValueError, match="seeding"):
        fit_kmeans(x, 4, 1, seeding="farthest")


@pytest.mark.parametrize("kind", ["vq", "rq"])
def test_kmeans_init_beats_uniform_init(kind):
    data = ClusteredData(16, num_clusters=12, noise=0.05)
    x = data.sample(1024, 0)
    errors = {}
    for init in ("kmeans", "uniform"):
        torch.manual_seed(0)
        if kind == "vq":
            q = VectorQuantizer(16, 16, init=init)
        else:
            q = ResidualQuantizer(1, 16, 16, lookup="euclidean", init=init)
        q.init_codebook(x)
        assert q.is_initialized()
        q.eval()
        errors[init] = q(data.sample(1024, 1)).metrics["recon_mse"].item()
    assert errors["kmeans"] < 0.5 * errors["uniform"], errors


@pytest.mark.parametrize("kind", ["vq", "rq", "rq-euclidean"])
@pytest.mark.parametrize("ema", [True, False])
def test_restart_revives_dead_codes_and_resets_their_state(kind, ema):
    torch.manual_seed(0)
    data = ClusteredData(8, num_clusters=4)
    kw = dict(ema=ema, restart_period=3, dead_code_window=2, dead_code_threshold=1.0, decay=0.9)
    if kind == "vq":
        q = VectorQuantizer(16, 8, **kw)
    else:
        q = ResidualQuantizer(1, 16, 8, lookup="euclidean" if kind == "rq-euclidean" else "unit", **kw)
    q.train()
    q.init_codebook(data.sample(256, 0))
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 5, 9]] = True
    unit = kind != "rq-euclidean"
    with torch.no_grad():
        # Make three codes unreachable and never used: opposite to all data (unit codes) / far away.
        far = -l2norm(data.centers.sum(0)) * (1.0 if unit else 1e3)
        q.codebook.data[0, dead] = far
    x1, x2 = data.sample(256, 1), data.sample(256, 2)
    out = q(x1)
    assert out.metrics["dead_codes/l0"].item() >= 3.0  # unused over the window so far
    q(x2)  # no restart yet (period 3)
    expected_far = l2norm(far) if unit else far
    assert torch.equal(q.get_codebooks()[0, dead], expected_far.expand(3, 8))
    assert (q.usage[0, dead] == 0).all()
    x3 = data.sample(256, 3)
    out = q(x3)
    assert out.metrics["dead_codes/l0"].item() == 3.0  # seen before the restart
    cb = q.get_codebooks()[0]
    rows = l2norm(x3) if unit else x3
    # each revived code is one of the batch's rows (same direction for unit codes)
    revived = l2norm(cb[dead]) if unit else cb[dead]
    dist = torch.cdist(revived, rows, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    assert (dist < 1e-5).all()
    # state reset: the revived codes' window counts and age start again from zero
    assert (q.usage[0, dead] == 0).all() and (q.window.age[0, dead] == 0).all()
    assert (q.window.age[0, ~dead] == 3).all() and (q.usage[0, ~dead] > 0).any()
    q.eval()
    counts = torch.bincount(q(x3).codes[:, 0], minlength=16)
    assert (counts[dead] > 0).all()  # the revived codes are used


def test_restart_only_every_period_after_a_whole_window_and_can_be_disabled():
    torch.manual_seed(0)
    x = torch.randn(128, 8)
    for enabled in (True, False):
        q = ResidualQuantizer(
            1, 8, 8, lookup="euclidean", restart_period=2, dead_code_window=3, restart_dead_codes=enabled
        ).train()
        q.init_codebook(x)
        with torch.no_grad():
            q.codebook.data[0, 0] = 1e4
        q(x)
        assert q.get_codebooks()[0, 0, 0].item() == 1e4
        q(x)  # a restart check, but the code has existed for 2 < 3 forwards only
        assert q.get_codebooks()[0, 0, 0].item() == 1e4
        q(x)
        q(x)  # check at forward 4: unused for a whole window of 3 forwards
        assert (q.get_codebooks()[0, 0, 0].item() == 1e4) != enabled


def _whole_data_usage(q, x):
    was = q.training
    q.eval()
    codes = q(x).codes
    q.train(was)
    return [torch.unique(codes[:, l]).numel() / q.codebook_size for l in range(q.num_levels)]


def test_a_short_phase_with_collapsed_codebooks_gets_revived():
    # A 40-forward phase where most codes start collapsed onto a few directions: with an
    # EMA-usage rule (decay 0.99) nothing could be restarted this early; the usage window
    # (10 forwards) revives them and every level ends with whole-data usage >= 0.9.
    data = ClusteredData(16, num_clusters=64, noise=0.3)
    test = data.sample(4096, 999)
    usage = {}
    for enabled in (True, False):
        torch.manual_seed(0)
        q = ResidualQuantizer(3, 32, 16, dead_code_window=10, restart_period=5, restart_dead_codes=enabled).train()
        q.init_codebook(data.sample(2048, 0))
        with torch.no_grad():  # collapse 24 of 32 codes per level onto code 0
            q.codebook.data[:, 8:] = q.codebook.data[:, :1]
        before = _whole_data_usage(q, test)
        assert max(before) <= 9 / 32
        for step in range(40):
            out = q(data.sample(1024, step + 1))
        usage[enabled] = _whole_data_usage(q, test)
        if enabled:
            # the window metrics say what tokenizing shows: over the last 10 forwards of
            # 1024 rows, most of the codes are used
            for l in range(3):
                assert out.metrics[f"cur/l{l}"].item() >= 0.9
    assert min(usage[True]) >= 0.9, usage
    assert max(usage[False]) <= 0.5, usage


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
def test_rq_error_decreases_with_each_level(lookup):
    data = ClusteredData(16, num_clusters=24, noise=0.1)
    torch.manual_seed(0)
    q = ResidualQuantizer(4, 32, 16, lookup=lookup).train()
    test = data.sample(2048, 999)
    q.init_codebook(data.sample(2048, 0))
    q.eval()
    after_init = per_level_errors(q.get_codebooks(), q(test).codes, test)
    q.train()
    for step in range(15):
        q(data.sample(1024, step + 1))
    q.eval()
    trained = per_level_errors(q.get_codebooks(), q(test).codes, test)
    var = test.pow(2).mean().item()
    for errs in (after_init, trained):
        assert errs[0] < var
        assert all(b < a for a, b in zip(errs, errs[1:])), errs
    print(
        f"\nRQ {lookup}: per-level MSE after init {['%.4f' % e for e in after_init]}, "
        f"after 15 EMA steps {['%.4f' % e for e in trained]} (signal {var:.3f})"
    )


def test_euclidean_lookup_reconstructs_better_than_cosine_lookup():
    # The reason RQ's default lookup is Euclidean (see bridle/modeling/quantizers/base.py).
    data = ClusteredData(32, num_clusters=48, noise=0.05)
    test = data.sample(2048, 999)
    err = {}
    for lookup in ("euclidean", "cosine"):
        torch.manual_seed(0)
        q = ResidualQuantizer(4, 64, 32, lookup=lookup).train()
        for step in range(10):
            q(data.sample(1024, step))
        q.eval()
        err[lookup] = q(test).metrics["recon_mse"].item()
    assert err["euclidean"] < 0.8 * err["cosine"], err


@pytest.mark.parametrize("kind", ["vq", "rq"])
def test_math_is_fp32_under_bf16_autocast(kind):
    torch.manual_seed(0)
    D, K = 64, 256
    q = VectorQuantizer(K, D) if kind == "vq" else ResidualQuantizer(2, K, D)
    data = ClusteredData(D, num_clusters=64, noise=0.3)
    q.train()
    q.init_codebook(data.sample(4096, 0))
    q.eval()
    z = data.sample(2048, 1)
    ref = q(z)
    # Precondition: a bf16 lookup would pick different codes on this data.
    x = l2norm(z) if kind == "vq" else z
    cb = q.get_codebooks()[0]
    if kind == "vq":
        s32, s16 = x @ cb.t(), (x.bfloat16() @ cb.bfloat16().t()).float()
    else:
        s32 = x @ cb.t() - 0.5 * cb.pow(2).sum(-1)
        s16 = (x.bfloat16() @ cb.bfloat16().t()).float() - 0.5 * cb.pow(2).sum(-1)
    assert (s32.argmax(1) != s16.argmax(1)).any()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out32 = q(z)  # fp32 input under autocast
        out16 = q(z.bfloat16())  # bf16 input under autocast
    assert torch.equal(out32.codes, ref.codes)
    assert out32.quantized.dtype == torch.float32 and out16.quantized.dtype == torch.bfloat16
    assert out32.loss.dtype == torch.float32 and out16.loss.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out16.metrics.values())
    torch.testing.assert_close(out32.loss, ref.loss, rtol=1e-6, atol=0)
    # bf16 input: identical to quantizing the (upcast) bf16 values in fp32 without autocast
    ref16 = q(z.bfloat16().float())
    assert torch.equal(out16.codes, ref16.codes)
    torch.testing.assert_close(out16.loss, ref16.loss, rtol=1e-6, atol=0)
    # training under autocast keeps the state fp32
    q.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z.bfloat16().requires_grad_(True))
        out.loss.backward()
    assert q.codebook.dtype == torch.float32 and q.usage.dtype == torch.float32


@pytest.mark.parametrize("kind", ["vq", "rq"])
@pytest.mark.parametrize("ema", [True, False])
def test_zero_vectors_give_no_nan(kind, ema):
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4, ema=ema) if kind == "vq" else ResidualQuantizer(3, 8, 4, ema=ema)
    q.train()
    z = torch.zeros(2, 16, 4)
    z[1, :8] = torch.randn(8, 4)
    z.requires_grad_(True)
    for _ in range(2):
        out = q(z)
        (out.quantized.sum() + out.loss).backward()
    assert torch.isfinite(out.quantized).all() and torch.isfinite(out.loss)
    assert torch.isfinite(z.grad).all()
    assert torch.isfinite(q.codebook).all() and torch.isfinite(q.usage).all()
    if not ema:
        assert torch.isfinite(q.codebook.grad).all()
    assert all(torch.isfinite(v) for v in out.metrics.values())
    q2 = VectorQuantizer(8, 4) if kind == "vq" else ResidualQuantizer(3, 8, 4)
    out = q2.train()(torch.zeros(10, 4))  # all-zero first batch (init on it)
    assert torch.isfinite(out.quantized).all() and torch.isfinite(q2.codebook).all()


def test_mse_matches_loss_definition():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 8, commitment=0.25).train()
    z = torch.randn(100, 8)
    q(z)
    q.eval()
    out = q(z)
    zn = l2norm(z)
    code = q.get_codebooks()[0][out.codes[:, 0]]
    expected = F.mse_loss(code, zn) * 1.25
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("kind", ["vq", "rq", "rq-euclidean"])
def test_learned_mode_gradients_match_the_loss_definition(kind):
    torch.manual_seed(0)
    if kind == "vq":
        q = VectorQuantizer(8, 4, ema=False)
    else:
        q = ResidualQuantizer(2, 8, 4, ema=False, lookup="euclidean" if kind == "rq-euclidean" else "unit")
    q.train()
    z0 = torch.randn(40, 4)
    q(z0)  # initialise
    z = z0.clone().requires_grad_(True)
    out = q(z)
    out.loss.backward()
    # Reference: the loss written out term by term, with the same codes.
    param = q.codebook.detach().clone().requires_grad_(True)
    zr = z0.clone().requires_grad_(True)
    cb = param if kind == "rq-euclidean" else l2norm(param)  # unit codes for vq and rq "unit"
    r = l2norm(zr) if kind == "vq" else zr
    terms = []
    for level in range(q.num_levels):
        ql = cb[level][out.codes[:, level]]
        terms.append(F.mse_loss(ql, r.detach()) + 0.25 * F.mse_loss(ql.detach(), r))
        r = r - ql.detach()
    ref = torch.stack(terms).mean()
    ref.backward()
    torch.testing.assert_close(out.loss, ref)
    torch.testing.assert_close(q.codebook.grad, param.grad)
    torch.testing.assert_close(z.grad, zr.grad)
