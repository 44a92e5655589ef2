"""File readers: MATLAB ``.mat`` (v4/v5/v7 and v7.3), ``.npz``, MNIST IDX and WAV.

Two ``.mat`` layouts are recognised:

1. *cell layout*: a cell array ``X`` of shape ``(1, V)`` or ``(V, 1)`` whose cells are ``(N, d_v)``
   matrices, with labels in ``y``, ``Y``, ``gt``, ``truth`` (or ``gnd``, ``label``, ``labels``);
2. *named layout*: one variable per view (any 2-D numeric variable, dense or sparse) plus a label
   variable.

Labels of any numeric values are mapped to ``0..K-1`` in sorted order (so 1-based MATLAB labels
become 0-based).
"""

from __future__ import annotations

import gzip
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp
import torch

from modalign.data.dataset import MultiViewDataset, as_dense_array
from modalign.data.errors import DataError, MissingDataError

__all__ = [
    "LABEL_NAMES",
    "encode_labels",
    "load_idx",
    "load_mat",
    "load_npz",
    "load_wav",
    "read_mat_variables",
]

# Looked up in this order; the first present one holds the labels.
LABEL_NAMES = ("y", "Y", "gt", "truth", "gnd", "label", "labels")
_CELL_NAMES = ("X", "x", "data")


class _Unsupported:
    """A MATLAB variable that cannot be a view or a label (struct, char, function handle...)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return self.description


def encode_labels(values: Any, *, what: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary label values to ``0..K-1`` in sorted order.

    Returns ``(codes, classes)``: ``codes`` ``(N,)`` int64 and ``classes`` ``(K,)`` the original
    values, so that ``classes[codes]`` gives the input back.
    """
    arr = as_dense_array(values, what=what)
    if arr.ndim > 1:
        if sum(s > 1 for s in arr.shape) > 1:
            raise DataError(f"{what}: expected a label vector, got shape {arr.shape}")
        arr = arr.reshape(-1)
    if arr.size == 0:
        raise DataError(f"{what}: the label vector is empty")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise DataError(f"{what}: labels contain NaN or inf")
    classes, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), classes


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"cell({len(value)})"
    if isinstance(value, _Unsupported):
        return value.description
    if sp.issparse(value):
        return f"sparse{value.shape} {value.dtype}"
    return f"{tuple(value.shape)} {value.dtype}"


def _variables_summary(variables: dict[str, Any]) -> str:
    if not variables:
        return "no variables"
    return ", ".join(f"{k}: {_describe(v)}" for k, v in variables.items())


# ---------------------------------------------------------------------------- MATLAB v4-v7
def _from_scipy(value: Any) -> Any:
    if sp.issparse(value):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.names is not None:
            return _Unsupported(f"struct{value.shape}")
        if value.dtype == object:
            if sum(s > 1 for s in value.shape) > 1:
                return _Unsupported(f"cell{value.shape} (2-D cell array)")
            return [_from_scipy(v) for v in value.reshape(-1)]
        if value.dtype.kind in "US":
            return _Unsupported(f"char{value.shape}")
        return value
    return _Unsupported(type(value).__name__)


def _read_v5(path: Path) -> dict[str, Any]:
    raw = scipy.io.loadmat(str(path))
    return {k: _from_scipy(v) for k, v in raw.items() if not k.startswith("__")}


# ---------------------------------------------------------------------------- MATLAB v7.3 (HDF5)
def _read_h5_object(f: Any, obj: Any) -> Any:
    import h5py

    mclass = obj.attrs.get("MATLAB_class", b"")
    mclass = mclass.decode() if isinstance(mclass, bytes) else str(mclass)
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            n_rows = int(obj.attrs["MATLAB_sparse"])
            jc = np.asarray(obj["jc"], dtype=np.int64).reshape(-1)
            ir = np.asarray(obj["ir"], dtype=np.int64).reshape(-1) if "ir" in obj else np.zeros(0)
            data = np.asarray(obj["data"]).reshape(-1) if "data" in obj else np.zeros(0)
            if mclass == "logical":
                data = data.astype(bool)
            return sp.csc_matrix((data, ir, jc), shape=(n_rows, jc.size - 1))
        return _Unsupported(f"struct ({mclass or 'group'})")
    if mclass == "cell":
        refs = np.asarray(obj)
        if sum(s > 1 for s in refs.shape) > 1:
            return _Unsupported(f"cell{refs.shape[::-1]} (2-D cell array)")
        return [_read_h5_object(f, f[r]) for r in refs.reshape(-1)]
    if mclass in ("char", "struct", "function_handle") or "MATLAB_empty" in obj.attrs:
        return _Unsupported(f"{mclass or 'empty'}")
    arr = np.asarray(obj)
    if arr.dtype.names is not None:  # complex numbers are stored as a (real, imag) compound
        return _Unsupported(f"complex{arr.shape[::-1]}")
    # MATLAB writes column-major data, so HDF5 sees every array with its axes reversed.
    return arr.T


def _read_v73(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: _read_h5_object(f, f[k]) for k in f if k not in ("#refs#", "#subsystem#")}


def read_mat_variables(path: str | Path) -> dict[str, Any]:
    """Read the variables of a ``.mat`` file (any version, v7.3 through h5py).

    Values are ndarrays, scipy sparse matrices, lists (cell arrays, flattened) or placeholders
    for what cannot be data (structs, strings). Raises MissingDataError or DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    import h5py

    try:
        if h5py.is_hdf5(str(path)):
            return _read_v73(path)
        return _read_v5(path)
    except DataError:
        raise
    except Exception as exc:  # scipy and h5py raise many types on corrupt input
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from exc


# ---------------------------------------------------------------------------- layouts
def _is_matrix(value: Any) -> bool:
    if sp.issparse(value):
        return True
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 2
        and (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_)
        and min(value.shape) > 0
    )


def _pick_labels(
    variables: dict[str, Any], path: Path, label_var: str | None
) -> tuple[str | None, np.ndarray | None]:
    names = [label_var] if label_var is not None else [n for n in LABEL_NAMES if n in variables]
    if label_var is not None and label_var not in variables:
        raise DataError(
            f"{path}: no label variable '{label_var}'; variables found: "
            f"{_variables_summary(variables)}"
        )
    if not names:
        return None, None
    name = names[0]
    value = variables[name]
    what = f"{path}: label variable '{name}'"
    if isinstance(value, list):
        # Some releases (ORL's orl_y.mat) store one copy of the labels per view in a cell.
        cells = [as_dense_array(c, what=what).reshape(-1) for c in value]
        if not cells:
            raise DataError(f"{what}: empty cell array")
        if any(c.shape != cells[0].shape or not np.array_equal(c, cells[0]) for c in cells[1:]):
            raise DataError(f"{what}: the cells hold different label vectors")
        value = cells[0]
    if isinstance(value, _Unsupported):
        raise DataError(f"{what}: not a numeric vector ({value.description})")
    codes, _ = encode_labels(value, what=what)
    return name, codes


def _orient(views: list[Any], names: list[str], n: int | None, path: Path) -> list[Any]:
    """Transpose views stored as (d_v, N), which some releases do; warn so it is visible."""
    if n is None:
        # Without labels, only the unambiguous case is fixed: all views share their column count
        # but not their row count.
        rows, cols = {v.shape[0] for v in views}, {v.shape[1] for v in views}
        if len(rows) == 1 or len(cols) != 1:
            return views
        n = cols.pop()
    out = []
    for v, name in zip(views, names, strict=True):
        if v.shape[0] != n and v.shape[1] == n:
            warnings.warn(
                f"{path}: view '{name}' is stored as (features, samples) {v.shape}; transposing",
                stacklevel=3,
            )
            v = v.T
        out.append(v)
    return out


def load_mat(
    path: str | Path,
    *,
    labels_path: str | Path | None = None,
    label_var: str | None = None,
    view_vars: Sequence[str] | None = None,
    view_names: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """Load a multi-view ``.mat`` file in the cell or the named layout (see module docstring).

    Args:
        path: the ``.mat`` file (MATLAB v4 to v7.3).
        labels_path: a separate ``.mat`` file holding the labels (ORL's ``orl_y.mat``).
        label_var: name of the label variable (default: the first of :data:`LABEL_NAMES`).
        view_vars: named layout: the view variables, in order (default: every 2-D numeric
            variable other than the labels, in file order).
        view_names: names given to the views (default: the variable names, or ``view0``...).
        dtype: floating dtype of the views.

    Returns:
        A :class:`MultiViewDataset` with ``V`` aligned views of shape ``(N, d_v)`` and labels
        ``(N,)`` in ``0..K-1`` (None when the file has no labels).

    Raises:
        MissingDataError: a file does not exist.
        DataError: unknown layout (the message lists the variables found), labels of the wrong
            length, views with different numbers of rows, NaN/inf values.
    """
    path = Path(path)
    variables = read_mat_variables(path)
    if labels_path is not None:
        label_vars = read_mat_variables(labels_path)
        if label_var is None and not any(n in label_vars for n in LABEL_NAMES):
            numeric = [k for k, v in label_vars.items() if not isinstance(v, _Unsupported)]
            if len(numeric) != 1:
                raise DataError(
                    f"{labels_path}: cannot tell which variable holds the labels; variables "
                    f"found: {_variables_summary(label_vars)}"
                )
            label_var = numeric[0]
        label_name, labels = _pick_labels(label_vars, Path(labels_path), label_var)
        label_source = f"{labels_path}: label variable '{label_name}'"
    else:
        label_name, labels = _pick_labels(variables, path, label_var)
        label_source = f"label variable '{label_name}'"

    cell_name = next((n for n in _CELL_NAMES if isinstance(variables.get(n), list)), None)
    if view_vars is None and cell_name is not None:
        views = variables[cell_name]
        default_names = [f"view{v}" for v in range(len(views))]
        for name, v in zip(default_names, views, strict=True):
            if not _is_matrix(v):
                raise DataError(
                    f"{path}: cell '{cell_name}' entry {name} is not a 2-D numeric matrix "
                    f"({_describe(v)})"
                )
    else:
        if view_vars is None:
            if labels is None:
                raise DataError(
                    f"{path}: unknown .mat layout: expected a cell array X of views with labels "
                    f"in one of {', '.join(LABEL_NAMES)}, or named view variables plus such a "
                    f"label variable; variables found: {_variables_summary(variables)}"
                )
            # Scalars (1 x 1) are metadata such as a class count, never a view.
            view_vars = [
                k
                for k, v in variables.items()
                if k != label_name and _is_matrix(v) and v.shape != (1, 1)
            ]
        else:
            absent = [k for k in view_vars if k not in variables]
            if absent:
                raise DataError(
                    f"{path}: view variable(s) {absent} not found; variables found: "
                    f"{_variables_summary(variables)}"
                )
            bad = [k for k in view_vars if not _is_matrix(variables[k])]
            if bad:
                raise DataError(f"{path}: variable(s) {bad} are not 2-D numeric matrices")
        if not view_vars:
            raise DataError(
                f"{path}: unknown .mat layout: no 2-D numeric view variables besides the labels; "
                f"variables found: {_variables_summary(variables)}"
            )
        views = [variables[k] for k in view_vars]
        default_names = list(view_vars)

    names = list(view_names) if view_names is not None else default_names
    if len(names) != len(views):
        raise DataError(f"{path}: {len(names)} view names for {len(views)} views")
    n = None if labels is None else labels.shape[0]
    views = _orient(list(views), names, n, path)
    if labels is not None:
        for name, v in zip(names, views, strict=True):
            if v.shape[0] != labels.shape[0]:
                raise DataError(
                    f"{path}: view '{name}' has {v.shape[0]} rows but the {label_source} has "
                    f"{labels.shape[0]} entries (label vector of the wrong length?)"
                )
    return MultiViewDataset(views, labels, names=names, source=str(path), dtype=dtype)


# ---------------------------------------------------------------------------- npz
def load_npz(
    path: str | Path,
    *,
    label_key: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """Load a ``.npz`` archive holding one ``(N, d_v)`` array per view plus optional labels.

    The labels are the array ``labels`` or ``y`` (or ``label_key``); every other array is a view,
    named by its key, in archive order. Labels are mapped to ``0..K-1``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a .npz archive of numeric arrays ({exc})") from exc
    if label_key is None:
        label_key = next((k for k in ("labels", "y") if k in arrays), None)
    elif label_key not in arrays:
        raise DataError(f"{path}: no array '{label_key}'; arrays found: {list(arrays)}")
    labels = None
    if label_key is not None:
        labels, _ = encode_labels(arrays.pop(label_key), what=f"{path}: labels '{label_key}'")
    if not arrays:
        raise DataError(f"{path}: no view arrays besides the labels")
    for k, a in arrays.items():
        if a.ndim == 1:
            raise DataError(
                f"{path}: view '{k}' is 1-D with shape {a.shape}; store views as (N, d) arrays"
            )
        if labels is not None and a.shape[0] != labels.shape[0]:
            raise DataError(
                f"{path}: view '{k}' has {a.shape[0]} rows but '{label_key}' has "
                f"{labels.shape[0]} entries (label vector of the wrong length?)"
            )
    return MultiViewDataset(
        list(arrays.values()), labels, names=list(arrays), source=str(path), dtype=dtype
    )


# ---------------------------------------------------------------------------- IDX (MNIST)
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    Returns the array with the shape given in its header, e.g. ``(10000, 28, 28)`` uint8 for the
    MNIST test images and ``(10000,)`` for the labels.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file has "
            f"{len(raw) - header} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------- WAV
def load_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """Read a WAV file with ``scipy.io.wavfile``.

    Returns ``(sample_rate, wave)`` with ``wave`` a float32 ``(T,)`` array in ``[-1, 1]``
    (integer PCM is scaled by its full range; several channels are averaged).
    """
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    try:
        rate, data = wavfile.read(str(path))
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a WAV file ({exc})") from exc
    if data.dtype == np.uint8:  # 8-bit PCM is unsigned with a 128 offset
        wave = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        wave = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        wave = data.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    return int(rate), wave
