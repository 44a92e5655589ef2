"""avdigits: the per-image pairing (about 1,000 test pairs) and the avdigits-label dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from modalign.data import (
    AVDIGITS_FSDD_INDICES,
    DataError,
    avdigits_pairs,
    load_avdigits,
    load_dataset,
    load_mnist,
)
from modalign.data.builtin import LABEL_VIEW


@pytest.fixture(scope="module")
def mnist_labels(avdata: Path) -> np.ndarray:
    return load_mnist(avdata)[1]


@pytest.fixture(scope="module")
def per_image(avdata: Path) -> dict[str, list]:
    """The per-image pairs of train, val and test (pairs only: no audio is read)."""
    return {s: avdigits_pairs(s, avdata, pairing="images") for s in ("train", "val", "test")}


def _test_share(labels: np.ndarray) -> dict[int, int]:
    """Images per digit in the MNIST test share (fractions 0.9-1.0, rounded as the loader does)."""
    counts = {}
    for digit in range(10):
        n = int((labels == digit).sum())
        counts[digit] = int(round(1.0 * n)) - int(round(0.9 * n))
    return counts


def _recording(path: Path) -> tuple[int, str, int]:
    digit, speaker, index = path.stem.split("_")
    return int(digit), speaker, int(index)


def test_per_image_test_split_uses_every_test_image_once(per_image, mnist_labels):
    rows = per_image["test"]
    share = _test_share(mnist_labels)
    images = [img for _, img, _ in rows]
    assert len(rows) == sum(share.values()) and 950 <= len(rows) <= 1050
    assert len(set(images)) == len(rows)  # every image once
    assert Counter(d for _, _, d in rows) == Counter(share)
    for path, img, digit in rows:
        rec_digit, _, index = _recording(path)
        assert rec_digit == digit == int(mnist_labels[img])
        assert index in AVDIGITS_FSDD_INDICES["test"]


def test_per_image_test_split_cycles_through_the_300_recordings(per_image, avdata, mnist_labels):
    rows = per_image["test"]
    uses = Counter(path for path, _, _ in rows)
    assert len(uses) == 300  # all test recordings used
    assert set(uses) == {p for p, _, _ in avdigits_pairs("test", avdata)}
    share = _test_share(mnist_labels)
    for digit in range(10):
        counts = [n for path, n in uses.items() if _recording(path)[0] == digit]
        assert len(counts) == 30 and sum(counts) == share[digit]
        # Cycling: every recording of a digit is used floor or ceil(images / recordings) times.
        assert max(counts) - min(counts) <= 1
    # 3 or 4 uses, except where a digit has fewer than 90 test images (digit 5: 89, so one
    # recording is used twice).
    assert all(2 <= n <= 4 for n in uses.values())
    assert sum(n not in (3, 4) for n in uses.values()) <= 1
    # Image k of a digit takes recording k mod 30, sorted by (speaker, index).
    for digit in range(10):
        recs = [p for p, _, d in rows if d == digit]
        ordered = sorted(set(recs), key=lambda p: _recording(p)[1:])
        assert recs == [ordered[k % len(ordered)] for k in range(len(recs))]


def test_per_image_splits_are_disjoint_and_keep_the_hashed_image_order(per_image, avdata):
    images = {s: {img for _, img, _ in rows} for s, rows in per_image.items()}
    assert not images["test"] & images["train"] and not images["test"] & images["val"]
    assert not images["train"] & images["val"]
    for s, rows in per_image.items():
        wanted = set(AVDIGITS_FSDD_INDICES[s])
        assert all(_recording(p)[2] in wanted for p, _, _ in rows)
    # The per-recording pairing takes the first images of the same hashed order.
    recordings = avdigits_pairs("val", avdata)
    for digit in range(10):
        first = [img for _, img, d in recordings if d == digit]
        every = [img for _, img, d in per_image["val"] if d == digit]
        assert every[: len(first)] == first


def test_per_image_pairing_is_deterministic_and_seeded(per_image, avdata):
    again = avdigits_pairs("test", avdata, pairing="images")
    assert again == per_image["test"]
    other = avdigits_pairs("test", avdata, pairing="images", seed=1)
    assert other != per_image["test"]
    assert [i for _, i, _ in other] != [i for _, i, _ in per_image["test"]]


def test_default_pairing_is_unchanged(avdata):
    for split in ("val", "test", "trainval"):
        default = avdigits_pairs(split, avdata)
        assert default == avdigits_pairs(split, avdata, pairing="recordings")
        assert len(default) == {"val": 300, "test": 300, "trainval": 2700}[split]


def test_load_per_image_test_split(per_image, avdata, mnist_labels):
    ds = load_avdigits("test", avdata, pairing="images")
    rows = per_image["test"]
    assert ds.n_samples == len(rows) and ds.names == ["image", "audio"]
    assert ds.source == "avdigits[test, per image]"
    assert ds.labels.tolist() == [d for _, _, d in rows]
    assert ds.labels.tolist() == [int(mnist_labels[img]) for _, img, _ in rows]
    # Rows sharing a recording have the same audio features.
    first, second = [k for k, (p, _, _) in enumerate(rows) if p == rows[0][0]][:2]
    assert torch.equal(ds.views[1][first], ds.views[1][second])
    assert not torch.equal(ds.views[0][first], ds.views[0][second])


def test_avdigits_label_has_a_one_hot_third_view(avdata):
    ds = load_dataset("avdigits-label", avdata, split="val")
    assert ds.names == ["image", "audio", "label"] and LABEL_VIEW == "label"
    assert ds.n_samples == 300 and ds.dims == [784, 32 * 40, 10]
    assert ds.kinds == ["image", "audio", "features"] and ds.shapes[2] is None
    label = ds.views[2]
    assert label.dtype == torch.float32 and tuple(label.shape) == (300, 10)
    assert torch.equal(label, torch.nn.functional.one_hot(ds.labels, 10).to(torch.float32))
    assert ds.source == "avdigits-label[val]"
    plain = load_dataset("AVDigits", avdata, split="val")
    assert torch.equal(plain.views[0], ds.views[0]) and torch.equal(plain.labels, ds.labels)
    assert load_dataset("AVDigits-Label", avdata, split="val").names[2] == "label"


def test_unknown_pairing_names_the_accepted_values(avdata):
    with pytest.raises(DataError, match="'recordings', 'images'.*'per-speaker'"):
        avdigits_pairs("test", avdata, pairing="per-speaker")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="pairing must be one of"):
        load_dataset("avdigits", avdata, split="test", pairing="image")


def test_unknown_pairing_is_checked_before_the_files(tmp_path):
    with pytest.raises(DataError, match="pairing must be one of"):
        avdigits_pairs("test", tmp_path, pairing="nope")  # type: ignore[arg-type]


def test_per_image_needs_a_recording_of_every_digit(tmp_path, avdata):
    (tmp_path / "mnist").symlink_to(avdata / "mnist")
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for path in sorted((avdata / "fsdd" / "recordings").glob("*_0.wav")):
        if not path.name.startswith("7_"):
            (folder / path.name).symlink_to(path)
    with pytest.raises(DataError, match="no recording of digit 7"):
        avdigits_pairs("test", tmp_path, pairing="images")
    assert len(avdigits_pairs("test", tmp_path)) == 9 * 6  # the default still pairs the rest
