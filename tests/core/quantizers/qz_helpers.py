"""Data helpers shared by the quantizer tests (imported as a plain module)."""

import pytest
import torch


class ClusteredData:
    """Gaussian clusters around random centres of random lengths (fixed by ``seed``);
    ``sample(n, seed)`` draws ``n`` rows ``[n, dim]``."""

    def __init__(self, dim: int, num_clusters: int = 16, noise: float = 0.05, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.noise = noise
        self.centers = torch.randn(num_clusters, dim, generator=g)
        self.scales = torch.rand(num_clusters, 1, generator=g) * 2.0 + 0.5

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(self.centers.shape[0], (n,), generator=g)
        return self.centers[idx] * self.scales[idx] + self.noise * torch.randn(n, self.dim, generator=g)


def per_level_errors(codebooks: torch.Tensor, codes: torch.Tensor, x: torch.Tensor):
    """MSE of ``x`` against the partial sums of the first 1..L level vectors."""
    recon = torch.zeros_like(x)
    errors = []
    for level in range(codebooks.shape[0]):
        recon = recon + codebooks[level][codes[:, level]]
        errors.append(((recon - x) ** 2).mean().item())
    return errors


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test with one intra-op thread: these tensors are small, and on a busy 2-core
    machine multi-threaded kernels wait on descheduled threads (tens of times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
