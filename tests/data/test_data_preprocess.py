"""Per-view preprocessing against scikit-learn's transformers, and the auto choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import MinMaxScaler, StandardScaler, normalize

from modalign.data import (
    DataError,
    L2Rows,
    MinMax,
    MultiViewDataset,
    Preprocessor,
    TfIdf,
    ZScore,
    detect_kind,
    drop_modalities,
    load_dataset,
    make_transform,
)

RNG = np.random.default_rng(0)
TRAIN = RNG.normal(3.0, 2.0, size=(40, 6))
TEST = RNG.normal(3.0, 2.0, size=(15, 6))
COUNTS = RNG.poisson(0.7, size=(30, 12)).astype(float)
COUNTS[:, 4] = 0.0  # a term that never occurs


def test_zscore_matches_standard_scaler_fitted_on_train_only():
    ours = ZScore().fit(TRAIN).transform(TEST)
    ref = StandardScaler().fit(TRAIN).transform(TEST)
    assert isinstance(ours, np.ndarray) and np.allclose(ours, ref)


def test_minmax_matches_sklearn():
    assert np.allclose(
        MinMax().fit(TRAIN).transform(TEST), MinMaxScaler().fit(TRAIN).transform(TEST)
    )


def test_l2_rows_matches_sklearn_and_keeps_zero_rows():
    x = TRAIN.copy()
    x[3] = 0.0
    out = L2Rows().fit_transform(x)
    assert np.allclose(out, normalize(x)) and np.all(out[3] == 0)


@pytest.mark.parametrize("sublinear", [False, True])
def test_tfidf_matches_sklearn(sublinear):
    ref = TfidfTransformer(norm=None, smooth_idf=True, sublinear_tf=sublinear).fit(COUNTS[:20])
    ours = TfIdf(sublinear_tf=sublinear).fit(COUNTS[:20])
    assert np.allclose(ours.transform(COUNTS[20:]), ref.transform(COUNTS[20:]).toarray())
    chained = make_transform("tfidf+l2").fit(COUNTS[:20]).transform(COUNTS[20:])
    ref_l2 = TfidfTransformer(norm="l2").fit(COUNTS[:20]).transform(COUNTS[20:]).toarray()
    assert np.allclose(chained, ref_l2)


def test_tfidf_rejects_negative_values_naming_the_view():
    ds = MultiViewDataset([TRAIN], names=["expr"], source="x.mat")
    with pytest.raises(DataError, match=r"x\.mat: view 'expr': tf-idf needs non-negative"):
        Preprocessor("tfidf").fit(ds)


def test_constant_features_do_not_produce_nan():
    x = np.column_stack([np.full(10, 5.0), np.arange(10.0), np.full(10, 1e8)]).astype(np.float32)
    for t in (ZScore(), MinMax()):
        out = torch.as_tensor(t.fit_transform(torch.from_numpy(x)))
        assert torch.isfinite(out).all()
        assert torch.all(out[:, 0] == 0) and torch.all(out[:, 2] == 0)


def test_detect_kind():
    assert detect_kind(COUNTS) == "counts"
    assert detect_kind(np.abs(TRAIN) / np.abs(TRAIN).sum(1, keepdims=True)) == "histogram"
    assert detect_kind(TRAIN - 3) == "real"


def test_auto_choice_per_view_and_train_only_statistics():
    hist = RNG.random((40, 5))
    hist /= hist.sum(1, keepdims=True)
    views = [RNG.poisson(1.0, (40, 8)), hist, TRAIN, RNG.random((40, 4))]
    ds = MultiViewDataset(
        views, np.arange(40) % 2, names=["c", "h", "r", "img"], kinds=["features"] * 3 + ["image"]
    )
    train, test = ds.split([0.75, 0.25], seed=0)
    prep = Preprocessor("auto").fit(train)
    assert prep.specs_ == ["tfidf+l2", "l2", "zscore", "zscore"]
    before = test.views[2].clone()
    out = prep.transform(test)
    assert torch.equal(test.views[2], before)  # the input is not modified
    ref = StandardScaler().fit(train.views[2].numpy()).transform(test.views[2].numpy())
    assert np.allclose(out.views[2].numpy(), ref, atol=1e-5)
    assert out.names == test.names and torch.equal(out.labels, test.labels)


def test_specs_by_name_and_list_and_errors():
    ds = MultiViewDataset([TRAIN, TRAIN + 1], names=["a", "b"])
    prep = Preprocessor({"a": "minmax"}).fit(ds)
    assert prep.specs_ == ["minmax", "zscore"]
    assert Preprocessor(["l2", "none"]).fit(ds).specs_ == ["l2", "none"]
    with pytest.raises(DataError, match="unknown preprocessing"):
        Preprocessor("whiten").fit(ds)
    with pytest.raises(DataError, match="unknown views"):
        Preprocessor({"zz": "l2"}).fit(ds)
    with pytest.raises(DataError, match="not fitted"):
        Preprocessor().transform(ds)
    other = MultiViewDataset([TRAIN[:, :3], TRAIN], names=["a", "b"], source="o")
    with pytest.raises(DataError, match="view 'a'.*fitted on 6 features, got 3"):
        prep.transform(other)


def test_missing_rows_are_ignored_when_fitting_and_stay_zero():
    x = RNG.normal(size=(50, 3))
    ds = MultiViewDataset([x, x * 2], names=["a", "b"])
    dropped = drop_modalities(ds, 0.3, seed=1, views=["a"])
    seen = dropped.row_mask("a").numpy()
    prep = Preprocessor("zscore").fit(dropped)
    assert np.allclose(prep.transforms_[0].mean_.numpy(), x[seen].mean(0))
    out = prep.transform(dropped)
    assert torch.all(out.views[0][~dropped.row_mask("a")] == 0)


def test_auto_on_real_data(shared_data):
    kinds = {
        "3sources": ["tfidf+l2"] * 3,
        "prokaryotic": ["zscore"] * 3,
        "orl": ["l2", "l2"],
    }
    for name, expected in kinds.items():
        ds = load_dataset(name, shared_data)
        out = Preprocessor().fit_transform(ds)
        assert Preprocessor().fit(ds).specs_ == expected, name
        assert all(torch.isfinite(v).all() for v in out.views)
