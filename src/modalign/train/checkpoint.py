"""Checkpoints that survive interruption and load without executing code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modalign.utils import atomic_write


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists) atomically.

    Through :func:`modalign.utils.atomic_write`: a run killed mid-write leaves the previous
    checkpoint intact, never a truncated one.
    """
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a foreign or damaged file: say which
        raise ValueError(f"checkpoint {path} could not be read: {err}") from err
