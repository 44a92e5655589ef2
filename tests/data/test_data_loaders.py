"""File loaders: .mat in both layouts (v5 and v7.3), .npz, IDX and WAV, and their errors."""

from __future__ import annotations

import gzip
import struct
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch
from scipy.io import wavfile

from modalign.data import (
    DataError,
    MissingDataError,
    encode_labels,
    load_dataset,
    load_idx,
    load_mat,
    load_npz,
    load_wav,
)

RNG = np.random.default_rng(0)
N = 9


def cell(*arrays) -> np.ndarray:
    c = np.empty((1, len(arrays)), dtype=object)
    for i, a in enumerate(arrays):
        c[0, i] = a
    return c


def test_encode_labels_sorted_order():
    codes, classes = encode_labels(np.array([[7], [3], [7], [-1], [3]]))
    assert codes.tolist() == [2, 1, 2, 0, 1] and classes.tolist() == [-1, 3, 7]
    with pytest.raises(DataError, match="vector"):
        encode_labels(np.zeros((3, 2)))


@pytest.mark.parametrize("shape", ["row", "column"])
def test_cell_layout_mixed_dtypes_sparse_and_one_based_labels(tmp_path, shape):
    a = RNG.integers(0, 255, size=(N, 4)).astype(np.uint8)
    b = sp.csc_matrix(RNG.integers(0, 3, size=(N, 6)).astype(np.float64))
    c = RNG.integers(0, 1000, size=(N, 2)).astype(np.int32)
    x = cell(a, b, c)
    y = (np.arange(N) % 3 + 1).reshape(-1, 1).astype(np.uint8)  # 1-based
    scipy.io.savemat(tmp_path / "m.mat", {"X": x if shape == "row" else x.T, "Y": y})
    ds = load_mat(tmp_path / "m.mat")
    assert ds.dims == [4, 6, 2] and ds.names == ["view0", "view1", "view2"]
    assert ds.labels.tolist() == (np.arange(N) % 3).tolist()
    assert torch.equal(ds.views[0], torch.from_numpy(a.astype(np.float32)))
    assert torch.equal(ds.views[1], torch.from_numpy(b.toarray().astype(np.float32)))
    assert torch.equal(ds.views[2], torch.from_numpy(c.astype(np.float32)))


@pytest.mark.parametrize("label_name", ["y", "gt", "truth"])
def test_named_layout_and_arbitrary_labels(tmp_path, label_name):
    raw = np.array([10, 30, 20, 30, 10, 20, 20, 10, 30])
    scipy.io.savemat(
        tmp_path / "n.mat",
        {
            "text": RNG.normal(size=(N, 3)),
            "img": RNG.normal(size=(N, 5)),
            label_name: raw,
            "n_classes": 3,  # scalar metadata, not a view
        },
    )
    ds = load_mat(tmp_path / "n.mat")
    assert sorted(ds.names) == ["img", "text"]
    assert ds.labels.tolist() == [0, 2, 1, 2, 0, 1, 1, 0, 2]
    ordered = load_mat(tmp_path / "n.mat", view_vars=["text", "img"])
    assert ordered.names == ["text", "img"]


def test_separate_label_file_with_label_cells(tmp_path):
    scipy.io.savemat(tmp_path / "v.mat", {"X": cell(np.ones((N, 2)), np.zeros((N, 3)))})
    lab = (np.arange(N) // 3 + 1).reshape(-1, 1).astype(np.uint8)
    scipy.io.savemat(tmp_path / "v_y.mat", {"y": cell(lab, lab)})
    ds = load_mat(tmp_path / "v.mat", labels_path=tmp_path / "v_y.mat")
    assert ds.labels.tolist() == (np.arange(N) // 3).tolist()
    scipy.io.savemat(tmp_path / "bad_y.mat", {"y": cell(lab, lab[::-1])})
    with pytest.raises(DataError, match="different label vectors"):
        load_mat(tmp_path / "v.mat", labels_path=tmp_path / "bad_y.mat")


def test_unlabelled_cell_layout_loads_without_labels(tmp_path):
    scipy.io.savemat(tmp_path / "u.mat", {"X": cell(np.ones((N, 2)), np.ones((N, 4)))})
    ds = load_mat(tmp_path / "u.mat")
    assert ds.labels is None and ds.dims == [2, 4]


def test_unknown_layout_lists_variables(tmp_path):
    scipy.io.savemat(tmp_path / "odd.mat", {"feats": np.ones((4, 2)), "note": "hello"})
    with pytest.raises(DataError, match=r"odd\.mat: unknown \.mat layout.*feats: \(4, 2\)") as e:
        load_mat(tmp_path / "odd.mat")
    assert "note: char" in str(e.value)


def test_label_vector_of_wrong_length_names_file_and_view(tmp_path):
    scipy.io.savemat(tmp_path / "w.mat", {"X": cell(np.ones((N, 2))), "y": np.arange(N - 1)})
    with pytest.raises(DataError, match=r"w\.mat: view 'view0' has 9 rows.*has 8 entries"):
        load_mat(tmp_path / "w.mat")


def test_views_with_different_rows_without_labels(tmp_path):
    scipy.io.savemat(tmp_path / "r.mat", {"X": cell(np.ones((N, 2)), np.ones((N - 2, 3)))})
    with pytest.raises(DataError, match=r"r\.mat.*'view0' has 9.*'view1' has 7"):
        load_mat(tmp_path / "r.mat")


def test_nan_in_a_view_names_file_and_view(tmp_path):
    bad = np.ones((N, 3))
    bad[4, 2] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"good": np.ones((N, 2)), "bad": bad, "y": np.ones(N)})
    with pytest.raises(DataError, match=r"nan\.mat: view 'bad'.*row 4, column 2"):
        load_mat(tmp_path / "nan.mat")


def test_transposed_view_is_fixed_with_a_warning(tmp_path):
    v = RNG.normal(size=(N, 4))
    scipy.io.savemat(tmp_path / "t.mat", {"X": cell(v, v.T.copy()), "y": np.arange(N)})
    with pytest.warns(UserWarning, match="view1.*transposing"):
        ds = load_mat(tmp_path / "t.mat")
    assert torch.allclose(ds.views[0], ds.views[1])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MissingDataError, match="no such file"):
        load_mat(tmp_path / "absent.mat")
    (tmp_path / "junk.mat").write_bytes(b"definitely not a mat file" * 10)
    with pytest.raises(DataError, match=r"junk\.mat: cannot read"):
        load_mat(tmp_path / "junk.mat")
    with pytest.raises(DataError, match="unsupported file type"):
        (tmp_path / "a.csv").write_text("1,2")
        load_dataset(tmp_path / "a.csv")
    with pytest.raises(DataError, match="neither a dataset name"):
        load_dataset("no-such-dataset")


# ---------------------------------------------------------------------------- MATLAB v7.3
def _write_v73(path, variables: dict) -> None:
    """Write variables the way MATLAB's -v7.3 does: HDF5 with a 512-byte header, arrays stored
    transposed, cells as object references into #refs#, sparse matrices as (data, ir, jc)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(group, name, value):
            if isinstance(value, list):
                ref_dtype = h5py.special_dtype(ref=h5py.Reference)
                ds = group.create_dataset(name, shape=(len(value), 1), dtype=ref_dtype)
                for i, item in enumerate(value):
                    ds[i, 0] = put(refs, f"{name}_{i}", item).ref
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
                return ds
            if sp.issparse(value):
                csc = sp.csc_matrix(value)
                g = group.create_group(name)
                g.create_dataset("data", data=csc.data)
                g.create_dataset("ir", data=csc.indices.astype(np.uint64))
                g.create_dataset("jc", data=csc.indptr.astype(np.uint64))
                g.attrs["MATLAB_class"] = np.bytes_("double")
                g.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
                return g
            arr = np.asarray(value)
            ds = group.create_dataset(name, data=arr.T)
            cls = {"f": "double", "u": "uint8", "i": "int32"}[arr.dtype.kind]
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            return ds

        for name, value in variables.items():
            put(f, name, value)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def test_v73_cell_layout_with_sparse_view(tmp_path):
    a = RNG.normal(size=(N, 4))
    b = sp.random(N, 7, density=0.3, random_state=1, format="csc")
    y = (np.arange(N) % 4 + 1).reshape(-1, 1).astype(np.uint8)
    _write_v73(tmp_path / "v73.mat", {"X": [a, b], "Y": y})
    ds = load_mat(tmp_path / "v73.mat")
    assert ds.dims == [4, 7]
    assert torch.allclose(ds.views[0], torch.from_numpy(a).float())
    assert torch.allclose(ds.views[1], torch.from_numpy(b.toarray()).float())
    assert ds.labels.tolist() == (np.arange(N) % 4).tolist()


def test_v73_named_layout(tmp_path):
    text = RNG.normal(size=(N, 3))
    _write_v73(
        tmp_path / "named73.mat",
        {"text": text, "counts": RNG.integers(0, 5, (N, 2)).astype(np.int32), "truth": np.ones(N)},
    )
    ds = load_mat(tmp_path / "named73.mat", view_vars=["text", "counts"])
    assert ds.names == ["text", "counts"] and ds.dims == [3, 2] and ds.n_classes == 1
    assert torch.allclose(ds.views[0], torch.from_numpy(text).float())


# ---------------------------------------------------------------------------- npz
def test_npz_views_and_labels(tmp_path):
    a, b = RNG.normal(size=(N, 2)), RNG.integers(0, 9, (N, 3)).astype(np.int16)
    np.savez(tmp_path / "d.npz", audio=a, image=b, labels=np.arange(N) % 2 + 5)
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.names == ["audio", "image"] and ds.labels.tolist() == (np.arange(N) % 2).tolist()
    np.savez(tmp_path / "e.npz", v=a, y=np.arange(N + 1))
    with pytest.raises(DataError, match=r"e\.npz: view 'v' has 9 rows but 'y' has 10"):
        load_npz(tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", v=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"f\.npz: cannot read"):
        load_npz(tmp_path / "f.npz")


# ---------------------------------------------------------------------------- IDX and WAV
def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_idx_plain_gzip_and_errors(tmp_path):
    imgs = RNG.integers(0, 256, size=(5, 3, 2)).astype(np.uint8)
    (tmp_path / "i.idx").write_bytes(_idx_bytes(imgs, 0x08))
    (tmp_path / "i.idx.gz").write_bytes(gzip.compress(_idx_bytes(imgs, 0x08)))
    assert np.array_equal(load_idx(tmp_path / "i.idx"), imgs)
    assert np.array_equal(load_idx(tmp_path / "i.idx.gz"), imgs)
    floats = RNG.normal(size=(4, 2)).astype(np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(floats, 0x0D))
    assert np.array_equal(load_idx(tmp_path / "f.idx"), floats)
    (tmp_path / "short.idx").write_bytes(_idx_bytes(imgs, 0x08)[:-3])
    with pytest.raises(DataError, match="announces shape"):
        load_idx(tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        load_idx(tmp_path / "bad.idx")


def test_wav_int16_uint8_and_stereo(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    wavfile.write(tmp_path / "a.wav", 8000, pcm)
    rate, wave = load_wav(tmp_path / "a.wav")
    assert rate == 8000 and wave.dtype == np.float32
    assert np.allclose(wave, [0, 0.5, -1, 32767 / 32768])
    wavfile.write(tmp_path / "b.wav", 4000, np.array([128, 255, 0], dtype=np.uint8))
    assert np.allclose(load_wav(tmp_path / "b.wav")[1], [0, 127 / 128, -1])
    wavfile.write(tmp_path / "c.wav", 8000, np.array([[0, 16384], [16384, 16384]], np.int16))
    assert np.allclose(load_wav(tmp_path / "c.wav")[1], [0.25, 0.5])
    (tmp_path / "d.wav").write_bytes(b"RIFFxxxx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"d\.wav: cannot read"):
            load_wav(tmp_path / "d.wav")
