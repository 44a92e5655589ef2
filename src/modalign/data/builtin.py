"""Built-in datasets: ``digits`` and ``digits-label`` (no file needed), ``avdigits`` (MNIST images +
FSDD speech) and ``mnist-label`` (MNIST images + labels).

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

``avdigits-tokens``
    ``avdigits`` as token sequences (:func:`load_avdigits_tokens`), the same splits, pairs and
    labels for the same ``split``, ``seed`` and ``pairing``. View ``image``: the 28x28 image as
    7 x 7 patches of 4 x 4 pixels in row-major order, ``(N, 49, 16)`` in [0, 1] (patch ``k`` is
    ``image[4*(k//7):4*(k//7)+4, 4*(k%7):4*(k%7)+4].ravel()``), kind ``image``, every token
    real. View ``audio``: each recording's log-mel frames (32 bands, 256-sample window, hop 128
    at 8 kHz: the settings of :class:`~modalign.data.AudioFeatures`) as tokens, neither cropped
    nor padded to a fixed count: ``(N, T_max, 32)`` with a token mask whose first
    :func:`~modalign.data.audio.frame_count` entries of each row are True. ``T_max`` is the
    largest frame count over ALL FSDD recordings (not only the split's), so every split has the
    same ``T_max``: 141 for the 3,000 recordings at the default settings (frame counts: min 7,
    median 25, max 141; 99 % of the recordings have at most 56 frames).

``avdigits-label``
    ``avdigits`` with the label as a third view, :data:`LABEL_VIEW` (``"label"``): the one-hot
    digit, ``(N, 10)``, kind ``features`` (``load_avdigits(..., label_view=True)``).

``mnist-label``
    The MNIST test images (10,000) as two views: ``image``, ``(N, 784)`` pixels scaled to [0, 1]
    (kind ``image``, row shape ``(28, 28)``), and :data:`LABEL_VIEW`, the one-hot digit ``(N, 10)``
    of kind ``features`` (:func:`load_mnist_label`).

    *Splits.* Exactly the MNIST image split of ``avdigits`` (:func:`digit_split_indices`): per
    digit, in the hashed order of the image indices and ``seed``, 80 % train, 10 % val and 10 %
    test (8,000, 1,001 and 999 images, whatever the seed); ``trainval`` is the union of train and
    val (9,001). Every image is in exactly one of train, val and test. The rows of a split are the
    images of the same ``avdigits`` split with ``pairing="images"``, in the same order (grouped by
    digit, then in hashed order); the default pairing uses a subset of them.

``digits-label``
    scikit-learn's 1,797 digits as two views: ``image``, the whole 8x8 image ``(N, 64)`` with
    values divided by 16 (kind ``image``, row shape ``(8, 8)``), and :data:`LABEL_VIEW`, the
    one-hot digit ``(N, 10)`` of kind ``features`` (:func:`load_digits_label`). No file needed.

    *Splits.* The same rule as the MNIST images (:func:`digit_split_indices` on the sample
    indices): per digit, in hashed order, 80 % train, 10 % val and 10 % test (1,438, 180 and 179
    samples, whatever the seed), ``trainval`` = train + val (1,618). Every sample is in exactly
    one of train, val and test; rows are grouped by digit, then in hashed order.

The label view carries the answer: :func:`refuse_label_view` keeps it out of the protocols that
would read it from their inputs (clustering, robustness, federated); only ``modalign represent``
takes it, for unsupervised training alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from modalign.data.audio import AudioFeatures, frame_count, waves_to_features, waves_to_frames
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
    "SPLITS",
    "avdigits_pairs",
    "digit_split_indices",
    "find_fsdd",
    "fsdd_max_frames",
    "image_patches",
    "load_avdigits",
    "load_avdigits_tokens",
    "load_digits_label",
    "load_digits_views",
    "load_mnist",
    "load_mnist_label",
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
#: Accepted values of the ``split`` argument of the built-in datasets.
SPLITS: tuple[str, ...] = ("train", "val", "test", "trainval")
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


def _check_split(split: str, dataset: str = "avdigits") -> None:
    if split not in SPLITS:
        raise DataError(f"{dataset} split must be one of {list(SPLITS)}, got {split!r}")


def digit_split_indices(
    labels: Sequence[int] | np.ndarray, split: Split, *, seed: int = 0
) -> np.ndarray:
    """The sample indices of a split, per digit: the MNIST image split of ``avdigits``.

    For each digit ``d`` in ``0..9``, the indices ``i`` with ``labels[i] == d`` are put in the
    order :func:`stable_order` gives them (with ``seed``), and the fractions 0-0.8 are ``train``,
    0.8-0.9 ``val`` and 0.9-1 ``test`` (boundaries rounded to the nearest index); ``trainval`` is
    train then val. Returns the indices ``(n,)`` int64, digit 0's first, each digit's in that
    order. Used for the MNIST images of ``avdigits`` and ``mnist-label`` and for the samples of
    ``digits-label``; every index is in exactly one of train, val and test.
    """
    _check_split(split, "the")
    labels = np.asarray(labels)
    parts = ("train", "val") if split == "trainval" else (split,)
    chosen = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        order = idx[stable_order(idx, seed)]
        chosen.extend(
            order[int(round(lo * idx.size)) : int(round(hi * idx.size))]
            for lo, hi in (_MNIST_FRACTIONS[p] for p in parts)
        )
    return np.concatenate(chosen).astype(np.int64)


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
    split_images = digit_split_indices(labels, split, seed=seed)
    split_digits = labels[split_images]
    pairs = []
    for digit in range(10):
        images = split_images[split_digits == digit]
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


def _pair_waves(
    pairs: Sequence[tuple[Path, int, int]], dataset: str
) -> tuple[list[np.ndarray], int, list[int]]:
    """The distinct recordings of ``pairs``, each read once (``pairing="images"`` reuses them),
    in order of first use (with one row per recording, exactly the rows' order): ``(waves,
    sample rate, rows)``, ``rows[i]`` the index in ``waves`` of row ``i``'s recording."""
    distinct = list(dict.fromkeys(path for path, _, _ in pairs))
    row_of = {path: k for k, path in enumerate(distinct)}
    waves, rates = [], set()
    for path in distinct:
        rate, wave = load_wav(path)
        rates.add(rate)
        waves.append(wave)
    if len(rates) != 1:
        raise DataError(f"{dataset}: recordings have different sample rates {sorted(rates)}")
    return waves, rates.pop(), [row_of[p] for p, _, _ in pairs]


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
    waves, rate, rows = _pair_waves(pairs, "avdigits")
    audio_view = waves_to_features(waves, rate, cfg)[rows]
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


def _wav_length(path: Path) -> int:
    """Samples of one channel of a WAV file, from its header when the standard library can read
    it (PCM), else by reading it."""
    import wave

    try:
        with wave.open(str(path), "rb") as f:
            return int(f.getnframes())
    except (wave.Error, EOFError, OSError):
        return len(load_wav(path)[1])


def fsdd_max_frames(data_dir: str | Path | None = None, audio: AudioFeatures | None = None) -> int:
    """The largest frame count (:func:`~modalign.data.audio.frame_count`) over every FSDD
    recording named ``{digit}_{speaker}_{index}.wav``: the token count ``T_max`` of the audio
    view of ``avdigits-tokens``, equal for every split (141 at the default settings)."""
    cfg = audio or AudioFeatures()
    folder = find_fsdd(data_dir)
    lengths = [_wav_length(p) for p in folder.glob("*.wav") if _WAV_NAME.match(p.name)]
    if not lengths:
        raise MissingDataError(f"{folder}: no recordings named {{digit}}_{{speaker}}_{{index}}.wav")
    return frame_count(max(lengths), cfg)


def image_patches(images: np.ndarray, patch: int = 4) -> np.ndarray:
    """``(N, H, W)`` images to ``(N, (H/patch) * (W/patch), patch * patch)`` patch tokens, the
    patches in row-major order: token ``k`` is the block of patch-row ``k // (W/patch)`` and
    patch-column ``k % (W/patch)``, flattened row by row."""
    n, h, w = images.shape
    if h % patch or w % patch:
        raise DataError(f"images of {h}x{w} pixels do not split into {patch}x{patch} patches")
    grid = images.reshape(n, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
    return grid.reshape(n, (h // patch) * (w // patch), patch * patch)


def load_avdigits_tokens(
    split: Split = "train",
    data_dir: str | Path | None = None,
    *,
    audio: AudioFeatures | None = None,
    seed: int = 0,
    pairing: Pairing = "recordings",
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """avdigits as token sequences (``avdigits-tokens``; see the module docstring).

    Args:
        split, data_dir, seed, pairing: as :func:`load_avdigits`, which gives the same pairs
            and labels row for row.
        audio: the frame features (default :class:`~modalign.data.AudioFeatures`: 32 log-mel
            bands, window 256, hop 128); ``pooling`` and ``n_frames`` are ignored, since every
            recording keeps all its frames.

    Returns:
        Token views ``image`` ``(N, 49, 16)`` in [0, 1] (4x4 patches in row-major order, kind
        ``image``, every token real) and ``audio`` ``(N, T_max, bands)`` (kind ``audio``)
        whose token mask marks each row's first ``frame_count(len(recording))`` frames as
        real and the rest as padding (zeros); ``T_max`` = :func:`fsdd_max_frames`, the same
        for every split. Labels: the digits.
    """
    _check_pairing(pairing)
    cfg = audio or AudioFeatures()
    cfg.validate()
    pairs = avdigits_pairs(split, data_dir, seed=seed, pairing=pairing)
    images, _ = load_mnist(data_dir)
    image_view = image_patches(images[[img for _, img, _ in pairs]] / 255.0, 4)
    waves, rate, rows = _pair_waves(pairs, "avdigits-tokens")
    frames = waves_to_frames(waves, rate, cfg)
    t_max = fsdd_max_frames(data_dir, cfg)
    longest = max(f.shape[0] for f in frames)
    if longest > t_max:  # only if a file changed between the two reads
        raise DataError(f"avdigits-tokens: a recording has {longest} frames, above T_max={t_max}")
    bands = frames[0].shape[1]
    audio_view = np.zeros((len(pairs), t_max, bands), dtype=np.float32)
    token_mask = np.zeros((len(pairs), t_max), dtype=bool)
    for r, k in enumerate(rows):
        f = frames[k]
        audio_view[r, : f.shape[0]] = f
        token_mask[r, : f.shape[0]] = True
    labels = np.array([d for _, _, d in pairs], dtype=np.int64)
    detail = ", per image" if pairing == "images" else ""
    return MultiViewDataset(
        [image_view, audio_view],
        labels,
        names=["image", "audio"],
        kinds=["image", "audio"],
        # No token shape: code that reads shapes[v] as an image row shape must not take a
        # 4x4 patch for one (the patch layout is documented instead).
        shapes=[None, None],
        token_masks=[None, token_mask],
        source=f"avdigits-tokens[{split}{detail}]",
        dtype=dtype,
    )


def _label_dataset(
    image_view: np.ndarray,
    labels: np.ndarray,
    shape: tuple[int, int],
    source: str,
    dtype: torch.dtype,
) -> MultiViewDataset:
    """Views ``image`` and :data:`LABEL_VIEW` (one-hot, ``(N, 10)``) of the rows of a split."""
    labels = labels.astype(np.int64)
    return MultiViewDataset(
        [image_view, np.eye(10, dtype=np.float64)[labels]],
        labels,
        names=["image", LABEL_VIEW],
        kinds=["image", "features"],
        shapes=[shape, None],
        source=source,
        dtype=dtype,
    )


def load_mnist_label(
    split: Split = "train",
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """The MNIST test images with their one-hot digit as a second view (``mnist-label``).

    Args:
        split: ``"train"`` (8,000 images), ``"val"`` (1,001), ``"test"`` (999) or
            ``"trainval"`` (9,001, train and val together): the MNIST image split of avdigits
            (:func:`digit_split_indices`), so the test images are avdigits' test images.
        data_dir: folder holding the MNIST IDX files (default: ``$MODALIGN_DATA`` or
            ``~/.cache/modalign``).
        seed: seed of the split; 0 is the reference (the same images as avdigits with seed 0).

    Returns:
        Views ``image`` ``(N, 784)`` in [0, 1] (kind ``image``, row shape ``(28, 28)``) and
        ``label`` ``(N, 10)`` one-hot (kind ``features``); labels are the digits 0..9. Rows are
        grouped by digit, in the split's hashed order (the rows of avdigits with
        ``pairing="images"``).
    """
    _check_split(split, "mnist-label")
    images, labels = load_mnist(data_dir)
    rows = digit_split_indices(labels, split, seed=seed)
    image_view = images[rows].reshape(rows.size, -1) / 255.0
    return _label_dataset(image_view, labels[rows], (28, 28), f"mnist-label[{split}]", dtype)


def load_digits_label(
    split: Split = "train",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> MultiViewDataset:
    """scikit-learn's digits, the whole 8x8 image and the one-hot digit (``digits-label``).

    Args:
        split: ``"train"`` (1,438 samples), ``"val"`` (180), ``"test"`` (179) or ``"trainval"``
            (1,618), per digit 80 / 10 / 10 % of the 1,797 samples in hashed order
            (:func:`digit_split_indices`).
        seed: seed of the split.

    Returns:
        Views ``image`` ``(N, 64)`` in [0, 1] (values divided by 16; kind ``image``, row shape
        ``(8, 8)``) and ``label`` ``(N, 10)`` one-hot (kind ``features``); labels 0..9.
    """
    from sklearn.datasets import load_digits

    _check_split(split, "digits-label")
    bunch = load_digits()
    rows = digit_split_indices(bunch.target, split, seed=seed)
    image_view = bunch.images[rows].astype(np.float64).reshape(rows.size, -1) / 16.0
    return _label_dataset(image_view, bunch.target[rows], (8, 8), f"digits-label[{split}]", dtype)
