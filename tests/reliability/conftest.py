import pytest

from rel_helpers import write_evil_checkpoint


@pytest.fixture
def evil(tmp_path):
    """(path of a crafted checkpoint, marker file that appears if its code ran)."""
    marker = str(tmp_path / "PWNED")
    return write_evil_checkpoint(str(tmp_path / "evil" / "model_final.pth"), marker), marker


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test that takes more than ~20 s")
