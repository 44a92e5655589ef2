"""Checkpoints that survive interruption, load without executing code, and are keyed by
what produced them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modalign.provenance import short_hash
from modalign.utils import atomic_write


def keyed_checkpoint(folder: str | Path, name: str, fingerprint: Mapping[str, Any]) -> Path:
    """``folder / "{name}-{hash}.pt"``, ``hash`` a short sha256 of ``fingerprint``.

    ``fingerprint`` holds everything the run depends on (the data's sha256, preprocessing,
    setting, the method's full config, the seed): a run with anything else looks for another
    file, so it can never resume from a checkpoint of other data or settings, even in a
    folder whose ``results.json`` was removed.
    """
    return Path(folder) / f"{name}-{short_hash(dict(fingerprint))}.pt"


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
