"""Built-in datasets: ``digits`` (no file needed) and ``avdigits`` (MNIST images + FSDD speech).

``digits``
    scikit-learn's 1,797 handwritten digits (8x8 images, values 0..16 scaled to [0, 1]) split into
    two views, the left and the right image halves (8x4 = 32 pixels each), the classic two-view
    construction of the deep CCA literature.

``avdigits``
    An audio-visual digit task in the style of AV-MNIST, built from two real datasets: the MNIST
    test images (10,000, 784 pixels scaled to [0, 1]) and the Free Spoken Digit Dataset (3,000
    recordings ``{digit}_{speaker}_{index}.wav`` at 8 kHz, 6 speakers x 10 digits x 50).

    *Splits.* FSDD is split by recording index, following its own convention that indices 0-4
    are the test set: ``test`` = indices 0-4 (300 recordings), ``val`` = 5-9 (300), ``train`` =
    10-49 (2,400), ``trainval`` = 5-49 (2,700, the upstream training set). The MNIST images are
    split per digit, in a fixed pseudo-random order (a splitmix64 hash of the image index and
    ``seed``, independent of NumPy's generators), into 80 % train, 10 % val and 10 % test;
    ``trainval`` is the union of train and val. No image or recording is in two of train, val
    and test.

    *Pairing.* ``pairing="recordings"`` (the default): one row per recording. Within a split and
    a digit, recordings sorted by (speaker, index) are paired in turn with that digit's images of
    the same split in the hashed order, so every row has a distinct image of the same digit.
    ``pairing="images"``: one row per MNIST image of the split instead; image ``k`` of a digit (in
    the same hashed order) takes recording ``k mod n`` of the ``n`` recordings of that digit in the
    split, sorted by (speaker, index). The test split then has about 1,000 pairs (its 10 % share
    of the 10,000 MNIST images) instead of 300, on which a 0.01 accuracy difference is noise;
    every image is used once and each of the 300 test recordings 3 or 4 times (one recording of
    digit 5, which has 89 test images for 30 recordings, twice), each time with a different
    image, so anything that depends on the audio alone still rests on 300 distinct recordings.
    Either pairing depends only on the file names, the MNIST order and ``seed``: the same call
    gives the same pairs. :func:`avdigits_pairs` returns them.

``avdigits-label``
    ``avdigits`` with the label as a third view, :data:`LABEL_VIEW` (``"label"``): the one-hot
    digit, ``(N, 10)``, kind ``features`` (``load_avdigits(..., label_view=True)``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from modalign.data.audio import AudioFeatures, waves_to_features
from modalign.data.dataset import MultiViewDataset
from modalign.data.errors import DataError, MissingDataError
from modalign.data.loaders import load_idx, load_wav
from modalign.data.registry import data_home, locate

__all__ = [
    "refuse_label_view",
    "AVDIGITS_FSDD_INDICES",
    "LABEL_VIEW",
    "PAIRINGS",
    "Pairing",
    "Split",
    "avdigits_pairs",
    "find_fsdd",
    "load_avdigits",
    "load_digits_views",
    "load_mnist",
    "stable_order",
]

Split = Literal["train", "val", "test", "trainval"]
Pairing = Literal["recordings", "images"]

#: Accepted values of the ``pairing`` argument of :func:`avdigits_pairs` and :func:`load_avdigits`.
PAIRINGS: tuple[str, ...] = ("recordings", "images")
#: Name of the one-hot label view of ``avdigits-label`` (``load_avdigits(label_view=True)``).
LABEL_VIEW = "label"

#: Recording indices (the last field of an FSDD file name) of each avdigits split.
AVDIGITS_FSDD_INDICES: dict[str, range] = {
    "test": range(0, 5),
    "val": range(5, 10),
    "train": range(10, 50),
    "trainval": range(5, 50),
}
_MNIST_FRACTIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_WAV_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def refuse_label_view(ds: MultiViewDataset, protocol: str) -> MultiViewDataset:
    """``ds`` unchanged, or a :class:`DataError` when it has a view named :data:`LABEL_VIEW`:
    that view IS the target, and ``protocol`` would read the answer from it (only
    ``modalign represent`` takes a label modality, for unsupervised training alone)."""
    if LABEL_VIEW in ds.names:
        raise DataError(
            f"{ds.source}: view '{LABEL_VIEW}' holds the labels themselves, so {protocol} would "
            "read the answer from its input; use the dataset without it (e.g. avdigits, not "
            "avdigits-label)"
        )
    return ds


def load_digits_views(dtype: torch.dtype = torch.float32) -> MultiViewDataset:
    """scikit-learn's digits as two views: ``left`` and ``right`` image halves, ``(1797, 32)`` each.

    Pixels are divided by 16 (range [0, 1]); labels 0..9; both views are of kind ``image`` with
    row shape ``(8, 4)``.
    """
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float64) / 16.0  # (1797, 8, 8)
    target = load_digits().target
    left = images[:, :, :4].reshape(len(images), -1)
    right = images[:, :, 4:].reshape(len(images), -1)
    return MultiViewDataset(
        [left, right],
        target,
        names=["left", "right"],
        kinds=["image", "image"],
        shapes=[(8, 4), (8, 4)],
        source="digits (scikit-learn)",
        dtype=dtype,
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def stable_order(keys: Sequence[int] | np.ndarray, seed: int = 0) -> np.ndarray:
    """A pseudo-random permutation of ``range(len(keys))`` that depends only on the integer keys
    and ``seed`` (a splitmix64 hash), so it never changes with library versions."""
    k = np.asarray(keys, dtype=np.uint64)
    salt = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return np.argsort(_splitmix64(k ^ salt), kind="stable")


def load_mnist(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split: images ``(10000, 28, 28)`` uint8 and labels ``(10000,)`` uint8."""
    images_path, labels_path = locate("mnist", data_dir)
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path}: expected (N, 28, 28) images and (N,) labels, got {images.shape} "
            f"and {labels.shape} ({labels_path})"
        )
    return images, labels


def find_fsdd(data_dir: str | Path | None = None) -> Path:
    """The folder of FSDD recordings (``fsdd/recordings``, ``recordings``, ... in the data dir)."""
    root = data_home(data_dir)
    cands = [
        root / "fsdd" / "recordings",
        root / "recordings",
        root / "free-spoken-digit-dataset" / "recordings",
        root / "fsdd",
    ]
    for c in cands:
        if c.is_dir() and any(c.glob("*.wav")):
            return c
    raise MissingDataError(
        f"FSDD recordings not found (looked in {', '.join(str(c) for c in cands)}): copy the "
        "'recordings' folder of https://github.com/Jakobovski/free-spoken-digit-dataset to "
        f"{root / 'fsdd' / 'recordings'}"
    )


def _check_split(split: str) -> None:
    if split not in AVDIGITS_FSDD_INDICES:
        raise DataError(
            f"avdigits split must be one of {list(AVDIGITS_FSDD_INDICES)}, got {split!r}"
        )


def _check_pairing(pairing: str) -> None:
    if pairing not in PAIRINGS:
        raise DataError(
            f"avdigits pairing must be one of {list(PAIRINGS)} (one row per recording or per "
            f"MNIST image), got {pairing!r}"
        )


def avdigits_pairs(
    split: Split = "train",
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    pairing: Pairing = "recordings",
) -> list[tuple[Path, int, int]]:
    """The avdigits pairs of a split: ``(recording path, MNIST test index, digit)`` per row.

    With ``pairing="recordings"`` (the default) there is one row per recording of the split,
    with ``pairing="images"`` one row per MNIST image of the split (recordings are reused in
    turn). See the module docstring for the split and pairing rules.
    """
    _check_split(split)
    _check_pairing(pairing)
    folder = find_fsdd(data_dir)
    # Only the small label file is needed here; the images are read by load_avdigits.
    labels = load_idx(locate("mnist", data_dir)[1])
    wanted = set(AVDIGITS_FSDD_INDICES[split])
    recordings: dict[int, list[tuple[str, int, Path]]] = {d: [] for d in range(10)}
    for path in folder.glob("*.wav"):
        m = _WAV_NAME.match(path.name)
        if m and int(m.group(3)) in wanted:
            recordings[int(m.group(1))].append((m.group(2), int(m.group(3)), path))
    parts = ("train", "val") if split == "trainval" else (split,)
    pairs = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        order = idx[stable_order(idx, seed)]
        images = np.concatenate(
            [
                order[int(round(lo * idx.size)) : int(round(hi * idx.size))]
                for lo, hi in (_MNIST_FRACTIONS[p] for p in parts)
            ]
        )
        recs = sorted(recordings[digit])
        if pairing == "images":
            if not recs:
                raise DataError(
                    f"avdigits: split '{split}' has no recording of digit {digit} in {folder} "
                    f"(indices {AVDIGITS_FSDD_INDICES[split].start}-"
                    f"{AVDIGITS_FSDD_INDICES[split].stop - 1}), so pairing='images' cannot pair "
                    f"its {images.size} MNIST images"
                )
            pairs.extend((recs[k % len(recs)][2], int(img), digit) for k, img in enumerate(images))
            continue
        if len(recs) > images.size:
            raise DataError(
                f"avdigits: split '{split}' has {len(recs)} recordings of digit {digit} but only "
                f"{images.size} MNIST images of it"
            )
        pairs.extend(
            (path, int(img), digit) for (_, _, path), img in zip(recs, images, strict=False)
        )
    if not pairs:
        raise MissingDataError(f"{folder}: no recordings named {{digit}}_{{speaker}}_{{index}}.wav")
    return pairs


def load_avdigits(
    split: Split = "train",
    data_dir: str | Path | None = None,
    *,
    audio: AudioFeatures | None = None,
    seed: int = 0,
    pairing: Pairing = "recordings",
    label_view: bool = False,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """MNIST images paired with FSDD recordings of the same digit (see module docstring).

    Args:
        split: ``"train"`` (2,400 pairs), ``"val"`` (300), ``"test"`` (300) or ``"trainval"``
            (2,700, train and val together); with ``pairing="images"`` about 8,000, 1,000, 1,000
            and 9,000.
        data_dir: folder holding the MNIST IDX files and the FSDD recordings (default:
            ``$MODALIGN_DATA`` or ``~/.cache/modalign``).
        audio: how recordings become features (default: 32 log-mel bands x 40 frames).
        seed: seed of the MNIST split and pairing; 0 is the reference benchmark.
        pairing: ``"recordings"`` (one row per recording, the reference benchmark) or
            ``"images"`` (one row per MNIST image of the split, recordings reused in turn).
        label_view: add a third view :data:`LABEL_VIEW` (``"label"``), the one-hot digit
            ``(N, 10)`` of kind ``features`` (the ``avdigits-label`` dataset).

    Returns:
        Views ``image`` ``(N, 784)`` in [0, 1] (row shape ``(28, 28)``) and ``audio``
        ``(N, prod(audio.shape))`` (row shape ``(bands, frames)`` with ``pooling="frames"``),
        then ``label`` with ``label_view``; labels are the digits 0..9.
    """
    _check_pairing(pairing)
    cfg = audio or AudioFeatures()
    pairs = avdigits_pairs(split, data_dir, seed=seed, pairing=pairing)
    images, _ = load_mnist(data_dir)
    image_view = images[[img for _, img, _ in pairs]].reshape(len(pairs), -1) / 255.0
    # Each distinct recording is read and featurised once (pairing="images" reuses them), in
    # order of first use: with one row per recording this is exactly the rows' order.
    distinct = list(dict.fromkeys(path for path, _, _ in pairs))
    row_of = {path: k for k, path in enumerate(distinct)}
    waves, rates = [], set()
    for path in distinct:
        rate, wave = load_wav(path)
        rates.add(rate)
        waves.append(wave)
    if len(rates) != 1:
        raise DataError(f"avdigits: recordings have different sample rates {sorted(rates)}")
    audio_view = waves_to_features(waves, rates.pop(), cfg)[[row_of[p] for p, _, _ in pairs]]
    labels = np.array([d for _, _, d in pairs], dtype=np.int64)
    views = [image_view, audio_view]
    names = ["image", "audio"]
    kinds = ["image", "audio"]
    # Pooled features have no time axis, so they get no row shape (and no time masking).
    shapes = [(28, 28), cfg.shape if cfg.pooling == "frames" else None]
    if label_view:
        views.append(np.eye(10, dtype=np.float64)[labels])
        names.append(LABEL_VIEW)
        kinds.append("features")
        shapes.append(None)
    name = "avdigits-label" if label_view else "avdigits"
    detail = ", per image" if pairing == "images" else ""
    return MultiViewDataset(
        views,
        labels,
        names=names,
        kinds=kinds,
        shapes=shapes,
        source=f"{name}[{split}{detail}]",
        dtype=dtype,
    )
