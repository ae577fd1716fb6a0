"""Fixtures for the training tests (helpers live in _training_toy.py)."""

from __future__ import annotations

import pytest
from _training_toy import make_volume


@pytest.fixture
def toy_volumes():
    return [make_volume(1, "a"), make_volume(2, "b")], [make_volume(3, "c")]
