"""Small helpers shared across layers."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask, without changing it where it can be read.

    Linux reports it in ``/proc/self/status``. Elsewhere the only way is to set a mask and
    put the old one back; in between, a file another thread creates would get the temporary
    mask, so that window is as short as possible and uses the restrictive 0o077.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file so that readers see either the old file or the complete new one.

    ``write`` receives a binary file object on a temporary file in the same folder (so that
    ``os.replace`` is an atomic rename on one file system); the temporary file is flushed,
    synced, given the permissions of a normally created file (``0o666`` less the umask:
    ``mkstemp`` makes it ``0o600``, and a colleague could not read a shared results folder)
    and renamed over ``path``, or removed if ``write`` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave the temporary file behind.
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_device(device: str) -> str:
    """``device`` if torch can use it here; otherwise a ``ValueError`` that says why.

    Catches names torch cannot parse (``"gpu"``) and CUDA or MPS devices on a machine
    without them, before any work starts rather than deep inside training.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device name ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    return device
