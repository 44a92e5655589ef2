"""The mnist-label and digits-label datasets: an image view and the one-hot label view, with
fixed per-digit train/val/test splits (mnist-label's are avdigits' MNIST image split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modalign.data import (
    DataError,
    avdigits_pairs,
    digit_split_indices,
    load_dataset,
    load_digits_label,
    load_mnist,
    load_mnist_label,
)
from modalign.data.builtin import LABEL_VIEW, refuse_label_view
from modalign.data.load import BUILTIN

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def mnist_dir(shared_data: Path) -> Path:
    """The shared data folder, skipping when the MNIST files are absent."""
    if not (shared_data / "mnist").exists():
        pytest.skip(f"real data not available: {shared_data / 'mnist'} is missing")
    return shared_data


@pytest.fixture(scope="module")
def mnist_sets(mnist_dir: Path) -> dict:
    """mnist-label's four splits, loaded through load_dataset."""
    return {s: load_dataset("mnist-label", mnist_dir, split=s) for s in (*SPLITS, "trainval")}


@pytest.fixture(scope="module")
def digits_sets() -> dict:
    return {s: load_dataset("digits-label", split=s) for s in (*SPLITS, "trainval")}


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.numpy()}


def _check_views(ds, n_pixels: int, shape: tuple[int, int], source: str) -> None:
    assert ds.names == ["image", LABEL_VIEW]
    assert ds.kinds == ["image", "features"]
    assert ds.shapes == [shape, None]
    assert ds.source == source
    image, label = ds.views
    assert image.shape == (len(ds), n_pixels) and label.shape == (len(ds), 10)
    assert image.dtype == torch.float32 and label.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert float(image.max()) == 1.0  # scaled by the full range, not by the data's max
    labels = ds.labels
    assert labels.dtype == torch.long and set(labels.tolist()) == set(range(10))
    # One-hot rows that agree with the labels.
    assert torch.equal(label.sum(dim=1), torch.ones(len(ds)))
    assert set(label.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(label.argmax(dim=1), labels)


# digits-label (no file needed) ------------------------------------------------------------------


def test_digits_label_views_and_sizes(digits_sets):
    sizes = {s: len(ds) for s, ds in digits_sets.items()}
    assert sizes == {"train": 1438, "val": 180, "test": 179, "trainval": 1618}
    for split, ds in digits_sets.items():
        _check_views(ds, 64, (8, 8), f"digits-label[{split}]")


def test_digits_label_splits_are_disjoint_and_cover_every_sample_once(digits_sets):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    idx = {s: digit_split_indices(bunch.target, s) for s in (*SPLITS, "trainval")}
    together = np.concatenate([idx[s] for s in SPLITS])
    assert together.size == 1797 and np.array_equal(np.sort(together), np.arange(1797))
    # trainval: per digit, train's samples then val's, in the same order.
    for digit in range(10):
        part = {s: i[bunch.target[i] == digit] for s, i in idx.items()}
        assert np.array_equal(part["trainval"], np.concatenate([part["train"], part["val"]]))
    # Per digit 80 / 10 / 10 %: every digit is in every split.
    for s in SPLITS:
        share = np.bincount(bunch.target[idx[s]], minlength=10) / np.bincount(bunch.target)
        lo, hi = {"train": (0.78, 0.82), "val": (0.08, 0.12), "test": (0.08, 0.12)}[s]
        assert ((share >= lo) & (share <= hi)).all(), (s, share)
    # The loaded rows are the whole images (/16) of these indices, in this order.
    for s, ds in digits_sets.items():
        expect = bunch.images[idx[s]].reshape(-1, 64) / 16.0
        assert np.allclose(ds.views[0].numpy(), expect, atol=1e-7)
        assert np.array_equal(ds.labels.numpy(), bunch.target[idx[s]])
    # Row sets too (the digits have a few duplicate images, so compare with multiplicity).
    rows = np.concatenate([digits_sets[s].views[0].numpy() for s in SPLITS])
    full = (bunch.images.reshape(-1, 64) / 16.0).astype(np.float32)
    assert np.array_equal(np.unique(rows, axis=0), np.unique(full, axis=0))


def test_digits_label_is_deterministic_and_seeded(digits_sets):
    again = load_digits_label("test")
    assert torch.equal(again.views[0], digits_sets["test"].views[0])
    assert torch.equal(again.labels, digits_sets["test"].labels)
    other = load_digits_label("test", seed=1)
    assert len(other) == len(again) and not torch.equal(other.views[0], again.views[0])
    assert load_digits_label("val", dtype=torch.float64).views[0].dtype == torch.float64


def test_bad_split_names_the_allowed_splits(tmp_path):
    for name in ("digits-label", "mnist-label"):
        # The split is checked before any file is read.
        with pytest.raises(DataError, match=r"train.*val.*test.*trainval") as info:
            load_dataset(name, tmp_path, split="all")
        assert name in str(info.value) and "'all'" in str(info.value)
    with pytest.raises(DataError, match="trainval"):
        digit_split_indices(np.arange(10), "validation")


def test_label_datasets_are_listed_and_refused_by_the_protocols(digits_sets):
    assert "mnist-label" in BUILTIN and "digits-label" in BUILTIN
    with pytest.raises(DataError, match="holds the labels themselves"):
        refuse_label_view(digits_sets["val"], "clustering")


def test_cli_lists_the_label_datasets(tmp_path, data_cli):
    from typer.testing import CliRunner

    app, prefix = data_cli
    out = CliRunner().invoke(app, [*prefix, "list", "--data-dir", str(tmp_path)]).output
    lines = out.splitlines()

    def status(name: str) -> str:
        i = next(k for k, line in enumerate(lines) if line.startswith(name + " "))
        return lines[i + 1].strip()

    assert status("digits-label") == "built in"
    assert status("mnist-label").startswith("missing") and "fetch mnist" in status("mnist-label")


# mnist-label (needs the MNIST files) ------------------------------------------------------------


def test_mnist_label_views_and_sizes(mnist_sets):
    sizes = {s: len(ds) for s, ds in mnist_sets.items()}
    assert sizes == {"train": 8000, "val": 1001, "test": 999, "trainval": 9001}
    for split, ds in mnist_sets.items():
        _check_views(ds, 784, (28, 28), f"mnist-label[{split}]")


def test_mnist_label_splits_are_disjoint_and_cover_all_test_images(mnist_sets, mnist_dir):
    images, labels = load_mnist(mnist_dir)
    idx = {s: digit_split_indices(labels, s) for s in (*SPLITS, "trainval")}
    together = np.concatenate([idx[s] for s in SPLITS])
    assert together.size == 10_000 and np.array_equal(np.sort(together), np.arange(10_000))
    assert set(idx["trainval"].tolist()) == set(idx["train"].tolist()) | set(idx["val"].tolist())
    for s, ds in mnist_sets.items():
        expect = images[idx[s]].reshape(-1, 784) / 255.0
        assert np.allclose(ds.views[0].numpy(), expect, atol=1e-7)
        assert np.array_equal(ds.labels.numpy(), labels[idx[s]])
    # By content too: no image row of one split in another.
    rows = {s: _rows(mnist_sets[s].views[0]) for s in SPLITS}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    assert _rows(mnist_sets["trainval"].views[0]) == rows["train"] | rows["val"]


def test_mnist_label_images_are_avdigits_images(mnist_sets, mnist_dir):
    if not (mnist_dir / "fsdd" / "recordings").exists():
        pytest.skip(f"real data not available: {mnist_dir / 'fsdd' / 'recordings'} is missing")
    _, labels = load_mnist(mnist_dir)
    for split in SPLITS:
        pairs = avdigits_pairs(split, mnist_dir, pairing="images")
        av_images = np.array([img for _, img, _ in pairs])
        # The same images in the same order, hence the same image rows.
        assert np.array_equal(av_images, digit_split_indices(labels, split))
        assert np.array_equal(np.array([d for _, _, d in pairs]), mnist_sets[split].labels.numpy())
    av = load_dataset("avdigits", mnist_dir, split="test", pairing="images")
    ours = mnist_sets["test"].views[0]
    assert torch.equal(av.views[0], ours)
    # Order-insensitive as well (sorted rows).
    assert _rows(av.views[0]) == _rows(ours)


def test_mnist_label_is_deterministic_and_seeded(mnist_sets, mnist_dir):
    again = load_mnist_label("test", mnist_dir)
    assert torch.equal(again.views[0], mnist_sets["test"].views[0])
    assert torch.equal(again.views[1], mnist_sets["test"].views[1])
    other = load_mnist_label("test", mnist_dir, seed=1)
    assert len(other) == len(again)
    assert _rows(other.views[0]) != _rows(again.views[0])
    with pytest.raises(DataError, match="holds the labels themselves"):
        refuse_label_view(mnist_sets["val"], "the robustness protocol")
