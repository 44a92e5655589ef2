"""One entry point: a dataset from a registry name, a built-in name or a file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.data.builtin import (
    load_avdigits,
    load_avdigits_tokens,
    load_digits_label,
    load_digits_views,
    load_mnist,
    load_mnist_label,
)
from modalign.data.dataset import MultiViewDataset
from modalign.data.downloads import expected_sha256, sha256_file
from modalign.data.errors import ChecksumError, DataError, MissingDataError
from modalign.data.loaders import load_mat, load_npz
from modalign.data.registry import REGISTRY, get_info, locate_file

__all__ = [
    "BUILTIN",
    "MIN_ROWS_PER_CLASS",
    "check_classes",
    "load_dataset",
    "load_file",
    "load_registered",
]

#: Built-in datasets and what they need.
BUILTIN = {
    "digits": "scikit-learn's digits, left/right image halves (embedded, no file)",
    "avdigits": "MNIST test images paired with FSDD recordings (needs mnist/ and fsdd/ files)",
    "avdigits-label": "avdigits with the one-hot digit as a third view, 'label' (same files)",
    "avdigits-tokens": "avdigits as token views: 49 image patches, variable-length log-mel frames",
    "mnist-label": "MNIST test images + one-hot digit view 'label', avdigits' image split (mnist/)",
    "digits-label": "scikit-learn's digits, whole 8x8 image + one-hot digit view 'label' (no file)",
}

#: The fewest rows per class a labelled protocol accepts, on average: ``N >= 2 K``.
MIN_ROWS_PER_CLASS = 2


def check_classes(ds: MultiViewDataset, protocol: str) -> MultiViewDataset:
    """``ds`` unchanged, or a :class:`DataError` naming its source when its labels cannot make
    a task for ``protocol`` (e.g. ``"clustering"``); every protocol calls it after loading.

    * At least two classes (``K >= 2``): with one, any clustering or classifier is perfect, so
      every method would report 1.000 and the table would say nothing.
    * At least :data:`MIN_ROWS_PER_CLASS` rows per class on average (``N >= 2 K``, ``K`` the
      number of clusters or classes the protocols ask for, ``max(label) + 1``; ``N`` the
      smallest view's rows): with as many clusters as rows every partition into singletons
      scores 1.000 too, and spectral clustering cannot ask for ``K >= N`` eigenvectors.

    A dataset smaller than a method's batch size is not refused: the learned methods then
    train on one batch of all its rows per epoch. Unlabelled data passes (the protocols that
    need labels say so themselves).
    """
    if ds.labels is None:
        return ds
    present = torch.unique(ds.labels).tolist()
    if len(present) < 2:
        raise DataError(
            f"{ds.source}: every label is {present[0]} (one class); {protocol} needs at least "
            "2 classes (K >= 2): with one, every method scores a perfect 1.000"
        )
    k, n = ds.n_classes, min(ds.rows)
    if n < MIN_ROWS_PER_CLASS * k:
        raise DataError(
            f"{ds.source}: {n} rows for {k} classes; {protocol} needs at least "
            f"{MIN_ROWS_PER_CLASS} rows per class (N >= {MIN_ROWS_PER_CLASS}K = "
            f"{MIN_ROWS_PER_CLASS * k})"
        )
    return ds


def load_file(path: str | Path, **kwargs: Any) -> MultiViewDataset:
    """Load a ``.mat`` or ``.npz`` file by its suffix (``kwargs`` go to the loader)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return load_mat(path, **kwargs)
    if suffix == ".npz":
        return load_npz(path, **kwargs)
    raise DataError(f"{path}: unsupported file type '{suffix}' (expected .mat or .npz)")


def load_registered(
    name: str,
    data_dir: str | Path | None = None,
    *,
    verify: bool = False,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """Load a registry dataset from the data directory.

    With ``verify`` every file's sha256 is checked against the registry (or the checksum
    recorded at first download) first.
    """
    info = get_info(name)
    paths = [locate_file(info, f, data_dir) for f in info.files]
    if verify:
        for file, path in zip(info.files, paths, strict=True):
            expected, origin = expected_sha256(file, data_dir)
            if expected is not None and (digest := sha256_file(path)) != expected:
                raise ChecksumError(
                    f"{path}: sha256 mismatch for dataset '{info.name}': expected {expected} "
                    f"({origin}), got {digest}"
                )
    if info.layout == "idx":
        images, labels = load_mnist(data_dir)
        return MultiViewDataset(
            [images.reshape(len(images), -1) / 255.0],
            labels.astype(np.int64),
            names=["image"],
            kinds=["image"],
            shapes=[(28, 28)],
            source=str(paths[0]),
            dtype=dtype,
        )
    labels_path = paths[info.labels_file] if info.labels_file is not None else None
    ds = load_mat(paths[0], labels_path=labels_path, view_vars=info.view_vars, dtype=dtype)
    ds.source = f"{info.name}:{paths[0].name}"
    return ds


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    **kwargs: Any,
) -> MultiViewDataset:
    """A :class:`MultiViewDataset` from a built-in name, a registry name or a file path.

    Args:
        name_or_path: ``"digits"``, ``"avdigits"``, ``"avdigits-label"`` (avdigits with a
            third, one-hot ``label`` view), ``"avdigits-tokens"`` (avdigits as token views:
            ``image`` ``(N, 49, 16)`` patches and ``audio`` ``(N, 141, 32)`` variable-length
            log-mel frames with a token mask; the same pairs), ``"mnist-label"`` (MNIST test
            images and the one-hot ``label`` view, split as avdigits' images: 8,000 / 1,001 /
            999 train / val / test),
            ``"digits-label"`` (scikit-learn's whole 8x8 digits and the ``label`` view, split
            per digit 80 / 10 / 10 %: 1,438 / 180 / 179), a registry name
            (``modalign data list``) or a path to a ``.mat`` / ``.npz`` file.
        data_dir: where registry files are looked up (default ``$MODALIGN_DATA`` or
            ``~/.cache/modalign``); files may lie in it or in a subfolder named after the dataset.
        kwargs: passed on: ``split``, ``audio``, ``seed``, ``pairing`` (``"recordings"`` or
            ``"images"``) for avdigits, avdigits-label and avdigits-tokens, ``label_view`` for
            avdigits;
            ``split`` (``"train"``, ``"val"``, ``"test"`` or ``"trainval"``) and ``seed`` for
            mnist-label and digits-label; ``verify`` for registry datasets; ``dtype`` for all.

    Raises:
        MissingDataError: the dataset's file is absent; the message says where it looked and
            to run ``modalign data fetch NAME``.
        DataError: unknown name, unreadable file or invalid content.
    """
    key = str(name_or_path)
    if key.lower() == "digits":
        return load_digits_views(**kwargs)
    if key.lower() == "avdigits":
        return load_avdigits(data_dir=data_dir, **kwargs)
    if key.lower() == "avdigits-label":
        return load_avdigits(data_dir=data_dir, label_view=True, **kwargs)
    if key.lower() == "avdigits-tokens":
        return load_avdigits_tokens(data_dir=data_dir, **kwargs)
    if key.lower() == "mnist-label":
        return load_mnist_label(data_dir=data_dir, **kwargs)
    if key.lower() == "digits-label":
        return load_digits_label(**kwargs)
    if key.lower() in REGISTRY:
        return load_registered(key.lower(), data_dir, **kwargs)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load_file(path, **kwargs)
    if path.suffix.lower() in (".mat", ".npz") or path.parent != Path("."):
        raise MissingDataError(f"{path}: no such file")
    raise DataError(
        f"'{key}' is neither a dataset name ({', '.join([*BUILTIN, *REGISTRY])}) nor an "
        "existing .mat/.npz file"
    )
