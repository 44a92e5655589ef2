"""MultiViewDataset: construction checks, indexing, batching, subsets and splits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from modalign.data import DataError, MultiViewBatch, MultiViewDataset


def make(n: int = 12, dims=(3, 5), seed: int = 0, **kw) -> MultiViewDataset:
    rng = np.random.default_rng(seed)
    views = [rng.normal(size=(n, d)) for d in dims]
    labels = np.arange(n) % 3
    return MultiViewDataset(views, labels, names=[f"v{i}" for i in range(len(dims))], **kw)


def test_basic_properties_and_dtypes():
    x = np.arange(12, dtype=np.uint16).reshape(4, 3)
    y = sp.csr_matrix(np.eye(4, 2, dtype=np.int32))
    ds = MultiViewDataset([x, y], [0, 1, 1, 0], names=["a", "b"], source="toy")
    assert ds.n_views == 2 and ds.n_samples == 4 and len(ds) == 4
    assert ds.dims == [3, 2] and ds.n_classes == 2
    assert all(v.dtype == torch.float32 for v in ds.views)
    assert torch.equal(ds.views[1], torch.eye(4, 2))
    assert ds.is_aligned and ds.missing_rate == 0.0
    assert torch.equal(ds.view("b"), ds.views[1])
    assert "toy" in repr(ds) and "a:(4, 3)" in repr(ds)


def test_single_view_allowed():
    ds = MultiViewDataset([np.ones((3, 2))])
    assert ds.names == ["view0"] and ds.labels is None and ds.n_classes == 0
    assert torch.equal(ds.row_labels(0), torch.full((3,), -1))


def test_claimed_alignment_with_different_rows_names_views():
    with pytest.raises(DataError, match=r"toy\.mat.*'img' has 4.*'snd' has 3"):
        MultiViewDataset(
            [np.zeros((4, 2)), np.zeros((3, 2))], names=["img", "snd"], source="toy.mat"
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_rejected_with_view_and_position(bad):
    x = np.zeros((5, 3))
    x[2, 1] = bad
    with pytest.raises(DataError, match=r"f\.mat: view 'text'.*1 NaN or inf.*row 2, column 1"):
        MultiViewDataset([np.zeros((5, 2)), x], names=["other", "text"], source="f.mat")


def test_label_vector_of_wrong_length():
    with pytest.raises(DataError, match="label vector has length 4 but the views have 5 rows"):
        MultiViewDataset([np.zeros((5, 2))], [0, 1, 0, 1])


def test_bad_labels_and_names():
    with pytest.raises(DataError, match="non-negative integers"):
        MultiViewDataset([np.zeros((3, 2))], [0.5, 1, 2])
    with pytest.raises(DataError, match="distinct"):
        MultiViewDataset([np.zeros((3, 2))] * 2, names=["a", "a"])
    with pytest.raises(DataError, match="at least one view"):
        MultiViewDataset([])
    with pytest.raises(DataError, match="2-D"):
        MultiViewDataset([np.zeros(3)], names=["flat"])
    with pytest.raises(DataError, match="numeric"):
        MultiViewDataset([np.array([["a", "b"]])])


def test_ids_and_mask_validation():
    views = [np.zeros((3, 2)), np.zeros((2, 2))]
    ds = MultiViewDataset(views, [0, 1, 2], ids=[[0, 1, 2], [2, 0]])
    assert ds.paired is None and ds.rows == [3, 2]
    assert ds.mask.tolist() == [[True, True], [True, False], [True, True]]
    with pytest.raises(DataError, match="different numbers of rows"):
        len(ds)
    with pytest.raises(DataError, match="more than once"):
        MultiViewDataset(views, ids=[[0, 1, 1], [2, 0]])
    with pytest.raises(DataError, match="label vector has length 2"):
        MultiViewDataset(views, [0, 1], ids=[[0, 1, 2], [2, 0]])
    with pytest.raises(DataError, match="no row for it"):
        MultiViewDataset(views, ids=[[0, 1, 2], [2, 0]], mask=np.ones((3, 2), bool))


def test_unaligned_ids_give_per_view_labels():
    views = [np.arange(6.0).reshape(3, 2), np.arange(9.0).reshape(3, 3)]
    ds = MultiViewDataset(views, [5, 6, 7], ids=[[0, 1, 2], [2, 0, 1]])
    assert ds.paired.tolist() == [False, False, False] and not ds.is_aligned
    b = ds.batch([0, 2])
    assert b.labels.tolist() == [[5, 7], [7, 6]]
    with pytest.raises(DataError, match="different labels"):
        _ = b.y


def test_getitem_and_default_dataloader():
    ds = make()
    item = ds[3]
    assert item["index"] == 3 and item["labels"].tolist() == [0, 0]
    assert torch.equal(item["views"][1], ds.views[1][3])
    assert ds[-1]["index"] == 11
    with pytest.raises(IndexError):
        ds[12]
    batches = list(DataLoader(ds, batch_size=5))
    assert [b["views"][0].shape[0] for b in batches] == [5, 5, 2]
    assert torch.equal(batches[1]["views"][1], ds.views[1][5:10])
    assert batches[0]["mask"].shape == (5, 2)


def test_batches_and_dataloader_fast_path():
    ds = make()
    got = list(ds.batches(5, shuffle=True, seed=3))
    again = list(ds.batches(5, shuffle=True, seed=3))
    order = torch.cat([b.index for b in got])
    assert sorted(order.tolist()) == list(range(12))
    assert torch.equal(order, torch.cat([b.index for b in again]))
    assert order.tolist() != list(range(12))
    assert [len(b) for b in ds.batches(5, drop_last=True)] == [5, 5]
    loaded = list(ds.dataloader(4, shuffle=True, seed=1))
    assert all(isinstance(b, MultiViewBatch) for b in loaded)
    idx = torch.cat([b.index for b in loaded])
    assert sorted(idx.tolist()) == list(range(12))
    b = loaded[0]
    assert torch.equal(b.views[0], ds.views[0][b.index]) and torch.equal(b.y, ds.labels[b.index])


def test_to_device_returns_new_dataset():
    ds = make()
    moved = ds.to("meta")
    assert all(t.device.type == "meta" for t in [*moved.views, *moved.ids, moved.mask])
    assert moved.labels.device.type == "meta" and moved.paired.device.type == "meta"
    assert ds.views[0].device.type == "cpu"
    b = ds.batch([0, 1]).to("meta")
    assert b.views[0].device.type == "meta" and b.mask.device.type == "meta"


def test_subset_renumbers_and_keeps_labels():
    ds = make()
    sub = ds.subset([7, 2, 9])
    assert sub.n_samples == 3 and sub.labels.tolist() == [1, 2, 0]
    # Rows keep their original order (2, 7, 9); identities follow the order given.
    assert torch.equal(sub.views[0], ds.views[0][[2, 7, 9]])
    assert sub.ids[0].tolist() == [1, 0, 2]
    assert sub.is_aligned


def test_subset_of_partially_unaligned_keeps_known_pairs_in_correspondence():
    n = 10
    ids0 = np.arange(n)
    ids1 = np.arange(n)
    ids1[[0, 5, 8]] = [8, 0, 5]  # rows 0, 5, 8 are shuffled in view 1
    paired = np.ones(n, bool)
    paired[[0, 5, 8]] = False
    views = [np.arange(n, dtype=float)[:, None], np.arange(n, dtype=float)[ids1][:, None]]
    ds = MultiViewDataset(views, np.arange(n), ids=[ids0, ids1], paired=paired)
    sub = ds.subset([0, 3, 6, 8])
    n_known = int(sub.paired.sum())
    assert n_known == 2
    # Known pairs come first and hold the same sample in both views.
    assert torch.equal(sub.ids[0][:n_known], sub.ids[1][:n_known])
    for v in range(2):  # every row still holds its own sample's data
        assert torch.equal(sub.views[v][:, 0].long(), torch.tensor([0, 3, 6, 8])[sub.ids[v]])


def test_split_is_stratified_disjoint_and_deterministic():
    ds = make(n=60)
    a, b, c = ds.split([0.6, 0.2, 0.2], seed=4)
    assert (a.n_samples, b.n_samples, c.n_samples) == (36, 12, 12)
    assert torch.bincount(b.labels).tolist() == [4, 4, 4]
    rows = [tuple(r) for part in (a, b, c) for r in part.views[0].tolist()]
    assert len(set(rows)) == 60
    a2, _, _ = ds.split([0.6, 0.2, 0.2], seed=4)
    assert torch.equal(a.views[1], a2.views[1])
    with pytest.raises(DataError, match="sum to 1"):
        ds.split([0.5, 0.2])


def test_select_views_and_with_views():
    ds = make(dims=(2, 3, 4))
    sub = ds.select_views(["v2", 0])
    assert sub.names == ["v2", "v0"] and sub.dims == [4, 2]
    new = ds.with_views([v * 2 for v in ds.views])
    assert torch.equal(new.views[1], ds.views[1] * 2) and torch.equal(new.labels, ds.labels)
    with pytest.raises(DataError, match="view 'v1'"):
        ds.with_views([ds.views[0], torch.full((12, 3), float("nan")), ds.views[2]])
    with pytest.raises(DataError, match="no view named 'zz'"):
        ds.view("zz")
