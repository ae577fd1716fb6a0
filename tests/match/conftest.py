"""Template-matching tests run torch on one thread: their FFTs are tiny, and on a shared 2-core machine a second
OpenMP thread spin-waits (10× slower, measured)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
