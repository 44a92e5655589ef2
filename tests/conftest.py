"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module")
def one_thread():
    """One thread for torch and for OpenMP/BLAS pools (scikit-learn's k-means, t-SNE).

    The problems in the tests are tiny: on a shared 2-core machine two threads spin-wait
    whenever another process holds a core, and run several times slower than one. One thread
    keeps the suite fast and its run time stable. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)
