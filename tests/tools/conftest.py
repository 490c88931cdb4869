import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test that takes more than ~20 s")
