"""Shared fixtures of the federated tests: the real data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/data beside the checkout; the library itself never looks there.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data folder (tests using it skip when prokaryotic is absent)."""
    if not (SHARED_DATA / "prokaryotic").exists():
        pytest.skip(f"real data not available: {SHARED_DATA / 'prokaryotic'} is missing")
    return SHARED_DATA
