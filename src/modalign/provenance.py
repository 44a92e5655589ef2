"""What produced a result: data fingerprints, run keys and the header of every results file.

A results folder (``--out``) is reused: an interrupted table resumes, and a later run adds
methods or seeds. That is only honest when everything that produced the earlier records and
checkpoints is what the new run would use (DESIGN.md section 3, "results are never stale").
Two levels say so:

* the folder's **key**: what every record in the folder shares: the protocol, the modalign
  version, the dataset's name and the sha256 of its arrays (:func:`data_fingerprint`), the
  preprocessing and the setting. A run with another key is refused.
* the **configs**: one full config per method (every :class:`~modalign.methods.OTMConfig` or
  :class:`~modalign.methods.SupervisedConfig` field). A method already in the folder must come
  with the same config; a new method (or a new seed of a known one) is added.

:func:`check_provenance` compares a folder's stored header with what a run wants and names
every setting that differs; :func:`run_header` builds the header that every ``results.json``
carries (command line, versions, git commit, data fingerprint, wall time, device, date).

This module sits beside :mod:`modalign.utils`: it imports nothing of modalign but its version,
so every layer may use it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT",
    "check_provenance",
    "data_fingerprint",
    "dataset_name",
    "git_state",
    "mismatch",
    "plain_settings",
    "protocol_key",
    "provenance_line",
    "run_header",
    "short_hash",
    "versions",
]

#: Version of the results file layout ``{"header": {...}, "records": [...]}``.
FORMAT = 1
#: Distributions whose versions every header records (``flwr`` too once it is imported).
_DISTRIBUTIONS = {"modalign": "modalign", "torch": "torch", "numpy": "numpy", "pot": "POT"}


def dataset_name(dataset: str | Path) -> str:
    """The name results are filed under: a file's stem, or a built-in or registry name in
    lower case (:func:`modalign.data.load_dataset` reads those case-insensitively)."""
    path = Path(dataset)
    return path.stem if path.suffix else str(dataset).lower()


# ------------------------------------------------------------------------------ fingerprints
def _update(h: Any, tag: str, array: Any) -> None:
    """Feed one array to ``h``: a text line ``tag dtype shape`` and then its C-order bytes,
    so that equal bytes of another dtype or shape never hash alike."""
    if array is None:
        h.update(f"{tag} none\n".encode())
        return
    if hasattr(array, "detach"):  # a torch tensor, on any device
        array = array.detach().cpu().contiguous().numpy()
    import numpy as np

    arr = np.ascontiguousarray(array)
    h.update(f"{tag} {arr.dtype.str} {list(arr.shape)}\n".encode())
    h.update(arr.tobytes())


def data_fingerprint(*datasets: Any) -> str:
    """sha256 (hex) of the arrays of one or more :class:`~modalign.data.MultiViewDataset`
    (several: e.g. fixed train / val / test splits, hashed in the order given).

    Hashed per dataset: the view names, each view ``(N_v, D_v)`` (or ``(N_v, T_v, d_v)``) as
    stored, the labels, each view's ``(N_v,)`` sample identities, the ``(n_samples, V)``
    missing-view mask and, for each token view, its ``(N_v, T_v)`` token mask, each as
    ``tag dtype shape`` then its bytes (a dataset without token views hashes as it always did).
    It depends on the loaded contents only, not on the file's name or path: a file with the
    same name and other values differs, and the same values read from another copy agree.
    """
    if not datasets:
        raise ValueError("data_fingerprint needs at least one dataset")
    h = hashlib.sha256()
    for d, ds in enumerate(datasets):
        h.update(f"dataset {d} views {json.dumps(list(ds.names))}\n".encode())
        for v, x in enumerate(ds.views):
            _update(h, f"view {v}", x)
        _update(h, "labels", ds.labels)
        for v, ids in enumerate(ds.ids):
            _update(h, f"ids {v}", ids)
        _update(h, "mask", ds.mask)
        for v, tm in enumerate(getattr(ds, "token_masks", None) or []):
            if tm is not None:
                _update(h, f"token mask {v}", tm)
    return h.hexdigest()


def short_hash(obj: Any, n: int = 10) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys;
    values JSON cannot hold written as their ``str``): a file-name-sized key."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


# ------------------------------------------------------------------------------ environment
def versions() -> dict[str, str | None]:
    """Python's and the installed versions of modalign, torch, numpy and POT (None when a
    distribution is not installed), and of flwr when this process has imported it."""
    names = dict(_DISTRIBUTIONS)
    if "flwr" in sys.modules:  # only "when used": importing Flower just to ask costs seconds
        names["flwr"] = "flwr"
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in names.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def _git(folder: Path, *args: str) -> str | None:
    """Output of ``git -C folder args`` or None on any failure (no git, no repository, a hung
    file system: 5 s at most). Provenance must never stop a run."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout modalign runs from, or ``(None, None)``.

    Only when this package's own files are tracked by that repository: an installed copy in
    ``site-packages`` of some other project's virtual environment is not that project's
    commit. ``dirty``: tracked files differ from the commit (the code may not be the
    commit's). Cached: it cannot change during a run that matters.
    """
    package = Path(__file__).resolve().parent
    if _git(package, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = _git(package, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(package, "status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


# ------------------------------------------------------------------------------ headers
def protocol_key(
    protocol: str, dataset: str, data_sha256: str | None, **settings: Any
) -> dict[str, Any]:
    """A results folder's key: the protocol, this modalign's version, the dataset's name and
    data fingerprint, and the protocol's settings (preprocessing, setting, rate...), as plain
    JSON values."""
    from modalign import __version__

    return plain_settings(
        {
            "protocol": protocol,
            "modalign": __version__,
            "dataset": dataset,
            "data_sha256": data_sha256,
            **settings,
        }
    )


def run_header(
    *,
    key: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    started: float | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The header of a results file.

    Args:
        key: the folder's fingerprint (see the module docstring); None: a folder written
            outside the protocols, which no protocol will resume.
        configs: ``{method: full config}``.
        data: what identifies the data, e.g. ``{"name": ..., "sha256": ...}``.
        started: ``time.perf_counter()`` when the run started: the header's ``wall_seconds``
            is the wall time of the invocation that wrote the file (a resumed table counts
            from its restart).
        device: where the run computed.

    Returns:
        A JSON-ready dict: ``format``, ``command`` (``sys.argv``), ``date`` (UTC, ISO 8601),
        ``wall_seconds``, ``device``, ``versions``, ``git_commit``, ``git_dirty``, ``data``,
        ``key`` and ``configs``.
    """
    commit, dirty = git_state()
    return {
        "format": FORMAT,
        "command": [str(a) for a in sys.argv],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": None if started is None else round(time.perf_counter() - started, 3),
        "device": device,
        "versions": versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "data": None if data is None else dict(data),
        "key": None if key is None else dict(key),
        "configs": {m: dict(c) for m, c in (configs or {}).items()},
    }


def provenance_line(header: Mapping[str, Any]) -> str:
    """One Markdown line for ``results.md``: command, version, commit, data sha256 prefix."""
    argv = list(header.get("command") or [])
    if argv:
        # The program, not where it is installed; `python -m modalign` runs __main__.py.
        program = Path(argv[0])
        is_module = program.name == "__main__.py" and program.parent.name == "modalign"
        argv[:1] = ["python", "-m", "modalign"] if is_module else [program.name]
    parts = [f"Produced by `{shlex.join(argv)}`" if argv else "Produced"]
    parts.append(f"with modalign {(header.get('versions') or {}).get('modalign')}")
    commit = header.get("git_commit")
    if commit:
        parts.append(f"(commit {commit[:10]}{', modified' if header.get('git_dirty') else ''})")
    data = header.get("data") or {}
    if data.get("sha256"):
        parts.append(f"on {data.get('name')} (data sha256 {data['sha256'][:12]})")
    if header.get("date"):
        parts.append(f"at {header['date']}")
    return "_" + " ".join(parts) + "._"


# ------------------------------------------------------------------------------ checks
def _describe(field: str, value: Any, key: Mapping[str, Any]) -> str:
    if field == "data_sha256" and isinstance(value, str):
        return f"data sha256 {value[:12]}.. ({key.get('dataset')})"
    return f"{field} {value!r}"


class _Unset:
    """A field one side does not have (not the same as a stored None)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Fields whose values differ (a field only one side has differs too), in ``wanted``'s
    order, then the fields only ``stored`` has."""
    fields = list(wanted) + [k for k in stored if k not in wanted]
    return [k for k in fields if stored.get(k, _UNSET) != wanted.get(k, _UNSET)]


def mismatch(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """``"epochs=20, not epochs=5"``, naming every field whose value differs (``<unset>``
    where one side lacks it), or None when the two agree."""
    diff = _differences(stored, wanted)
    if not diff:
        return None
    was = ", ".join(f"{k}={stored.get(k, _UNSET)!r}" for k in diff)
    now = ", ".join(f"{k}={wanted.get(k, _UNSET)!r}" for k in diff)
    return f"{was}, not {now}"


def check_provenance(
    where: str | Path,
    header: Mapping[str, Any] | None,
    key: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Refuse to add to (or resume) a folder produced by anything else; return the configs
    the folder holds after this run (the stored ones plus ``configs``).

    Args:
        where: the folder, quoted in the message.
        header: the folder's stored header, None when it has no results yet.
        key, configs: what this run would write (see the module docstring).

    Raises:
        ValueError: one line naming every differing setting, e.g. ``runs/x holds results for
            data sha256 ab12cd34ef56.. (a), not 9f00e1d2c3b4.. (b): use another --out or
            remove it``.
    """
    hint = "use another --out or remove it"
    if header is None:
        return {m: dict(c) for m, c in configs.items()}
    stored_key = header.get("key")
    if not isinstance(stored_key, Mapping):
        raise ValueError(
            f"{where} holds results with no fingerprint of what produced them (written "
            f"outside modalign's protocols): {hint}"
        )
    diff = _differences(stored_key, key)
    if diff:
        before = " and ".join(_describe(f, stored_key.get(f, _UNSET), stored_key) for f in diff)
        after = " and ".join(_describe(f, key.get(f, _UNSET), key) for f in diff)
        raise ValueError(f"{where} holds results for {before}, not {after}: {hint}")
    merged = {m: dict(c) for m, c in (header.get("configs") or {}).items()}
    for method, config in configs.items():
        diff = mismatch(merged[method], config) if method in merged else None
        if diff:
            raise ValueError(f"{where} holds {method} results with {diff}: {hint}")
        merged[method] = dict(config)
    return merged


def plain_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as plain JSON values (numbers, strings, booleans, None; anything else, e.g.
    a tuple or a device, as its ``str``), so that settings stored in a checkpoint or a results
    file compare equal to fresh ones after the round trip."""
    return {
        k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
        for k, v in values.items()
    }
