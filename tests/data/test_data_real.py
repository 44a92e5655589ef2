"""Every dataset of ../shared/data through the registry, plus digits and avdigits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.data import (
    AVDIGITS_FSDD_INDICES,
    MissingDataError,
    avdigits_pairs,
    load_dataset,
    load_mnist,
)

EXPECTED = {
    "orl": ([(400, 288), (400, 288)], 40, None),
    "orl4": ([(400, 512), (400, 59), (400, 864), (400, 254)], 40, None),
    "prokaryotic": ([(551, 438), (551, 3), (551, 393)], 4, [313, 91, 35, 112]),
    "3sources": ([(169, 3560), (169, 3631), (169, 3068)], 6, None),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_registry_datasets_load_with_expected_shapes(shared_data, name):
    shapes, n_classes, counts = EXPECTED[name]
    ds = load_dataset(name, shared_data, verify=True)
    assert [tuple(v.shape) for v in ds.views] == shapes
    assert ds.n_classes == n_classes and ds.is_aligned
    assert int(ds.labels.min()) == 0 and int(ds.labels.max()) == n_classes - 1
    assert len(torch.unique(ds.labels)) == n_classes
    if counts is not None:
        assert torch.bincount(ds.labels).tolist() == counts
    assert all(torch.isfinite(v).all() for v in ds.views)


def test_named_views_and_quirks(shared_data):
    assert load_dataset("prokaryotic", shared_data).names == [
        "text",
        "proteome_comp",
        "gene_repert",
    ]
    assert load_dataset("3sources", shared_data).names == ["bbc", "guardian", "reuters"]
    orl = load_dataset("orl", shared_data)
    # Known quirk of this release: its two "views" are the same matrix.
    assert torch.allclose(orl.views[0], orl.views[1])
    assert torch.bincount(orl.labels).tolist() == [10] * 40


def test_flat_data_dir_and_missing_message(tmp_path, shared_data):
    (tmp_path / "3-sources.mat").symlink_to(shared_data / "3sources" / "3-sources.mat")
    assert load_dataset("3sources", tmp_path).n_samples == 169
    with pytest.raises(MissingDataError) as err:
        load_dataset("prokaryotic", tmp_path)
    msg = str(err.value)
    assert "modalign data fetch prokaryotic" in msg and str(tmp_path / "prokaryotic.mat") in msg
    assert str(tmp_path / "prokaryotic" / "prokaryotic.mat") in msg


def test_env_var_selects_the_data_dir(monkeypatch, shared_data):
    monkeypatch.setenv("MODALIGN_DATA", str(shared_data))
    assert load_dataset("orl4").dims == [512, 59, 864, 254]


def test_digits_two_halves():
    ds = load_dataset("digits")
    assert ds.n_samples == 1797 and ds.dims == [32, 32] and ds.n_classes == 10
    from sklearn.datasets import load_digits

    img = load_digits().images[5] / 16.0
    assert np.allclose(ds.views[0][5].numpy().reshape(8, 4), img[:, :4])
    assert np.allclose(ds.views[1][5].numpy().reshape(8, 4), img[:, 4:])


def test_mnist_via_registry(shared_data):
    images, labels = load_mnist(shared_data)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).sum() == 10000 and labels.max() == 9


def test_avdigits_shapes_and_speed(avdigits_splits):
    sizes = {s: avdigits_splits[s].n_samples for s in ("train", "val", "test")}
    assert sizes == {"train": 2400, "val": 300, "test": 300}
    for s in ("train", "val", "test"):
        ds = avdigits_splits[s]
        assert ds.names == ["image", "audio"] and ds.dims == [784, 32 * 40]
        assert torch.bincount(ds.labels).tolist() == [sizes[s] // 10] * 10
        assert float(ds.views[0].min()) >= 0.0 and float(ds.views[0].max()) <= 1.0
    # All 3,000 recordings (and the MNIST file, three times) in a few seconds.
    assert avdigits_splits["seconds"] < 15.0


def test_avdigits_pairing_is_same_digit_disjoint_and_deterministic(shared_data):
    _, mnist_labels = load_mnist(shared_data)
    pairs = {s: avdigits_pairs(s, shared_data) for s in ("train", "val", "test")}
    for s, rows in pairs.items():
        wanted = set(AVDIGITS_FSDD_INDICES[s])
        for path, img, digit in rows:
            d, _, idx = path.stem.split("_")
            assert int(d) == digit == mnist_labels[img] and int(idx) in wanted
        assert len({img for _, img, _ in rows}) == len(rows)
    images = [{img for _, img, _ in rows} for rows in pairs.values()]
    assert (
        not (images[0] & images[1]) and not (images[0] & images[2]) and not (images[1] & images[2])
    )
    assert avdigits_pairs("test", shared_data) == pairs["test"]
    trainval = avdigits_pairs("trainval", shared_data)
    assert len(trainval) == 2700
    assert not {img for _, img, _ in trainval} & images[2]  # never a test image
    other_seed = avdigits_pairs("test", shared_data, seed=1)
    assert [p for p, _, _ in other_seed] == [p for p, _, _ in pairs["test"]]
    assert [i for _, i, _ in other_seed] != [i for _, i, _ in pairs["test"]]


def test_avdigits_rows_match_their_pairs(shared_data, avdigits_splits):
    images, _ = load_mnist(shared_data)
    ds = avdigits_splits["test"]
    pairs = avdigits_pairs("test", shared_data)
    for row in (0, 151, 299):
        expected = images[pairs[row][1]].reshape(-1) / 255.0
        assert np.allclose(ds.views[0][row].numpy(), expected, atol=1e-6)
        assert int(ds.labels[row]) == pairs[row][2]


def test_avdigits_missing_files_say_where(tmp_path):
    with pytest.raises(MissingDataError, match="FSDD recordings not found"):
        load_dataset("avdigits", tmp_path)


def test_avdigits_pooled_mfcc_features(shared_data):
    from modalign.data import AudioFeatures, load_avdigits

    ds = load_avdigits("test", shared_data, audio=AudioFeatures(kind="mfcc", pooling="meanstd"))
    assert ds.dims == [784, 26] and ds.shapes == [(28, 28), None]
    assert ds.n_samples == 300 and ds.kinds == ["image", "audio"]
