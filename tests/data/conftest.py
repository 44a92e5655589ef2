"""Shared fixtures of the data tests: the project's real data folder and the CLI app."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

# ../shared/data beside the checkout; the library itself never looks there.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REPO_SRC = Path(__file__).resolve().parents[2] / "src"


def _require(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (expected ../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data folder (tests using it skip when it is absent)."""
    return _require()


@pytest.fixture(scope="session")
def avdata(shared_data: Path) -> Path:
    """The shared data folder, skipping when the MNIST or FSDD files (avdigits) are absent."""
    _require("mnist")
    _require("fsdd", "recordings")
    return shared_data


@pytest.fixture(scope="session")
def avdigits_splits(shared_data: Path) -> dict:
    """avdigits train, val and test (all 3,000 recordings) loaded once, with the load time."""
    _require("mnist")
    _require("fsdd", "recordings")
    from modalign.data import load_avdigits

    start = time.perf_counter()
    splits = {s: load_avdigits(s, shared_data) for s in ("train", "val", "test")}
    splits["seconds"] = time.perf_counter() - start
    return splits


@pytest.fixture(scope="session")
def data_cli():
    """``(app, prefix)``: the root CLI with prefix ``["data"]`` when it imports, else the data
    sub-app itself (loaded from its file, so a half-built ``modalign.cli`` does not block it)."""
    try:
        from modalign.cli import app

        return app, ["data"]
    except ImportError:
        path = REPO_SRC / "modalign" / "cli" / "data.py"
        spec = importlib.util.spec_from_file_location("_modalign_cli_data", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.app, []
