"""Multi-view datasets, loaders, preprocessing and the robustness corruptions.

Typical use::

    from modalign.data import load_dataset, Preprocessor, unalign, drop_modalities

    ds = load_dataset("prokaryotic")              # or "digits", "avdigits", a .mat/.npz path
    ds = load_dataset("mnist-label", split="test")  # or "digits-label": image + one-hot label
    train, test = ds.split([0.8, 0.2], seed=0)
    prep = Preprocessor("auto").fit(train)        # statistics from training data only
    test = drop_modalities(unalign(prep.transform(test), rate=0.5, seed=0), rate=0.25, seed=0)
"""

from modalign.data.audio import (
    AudioFeatures,
    frame_count,
    log_mel_frames,
    log_mel_spectrogram,
    mel_filterbank,
    mfcc,
    waves_to_frames,
)
from modalign.data.builtin import (
    AVDIGITS_FSDD_INDICES,
    avdigits_pairs,
    digit_split_indices,
    fsdd_max_frames,
    image_patches,
    load_avdigits,
    load_avdigits_tokens,
    load_digits_label,
    load_digits_views,
    load_mnist,
    load_mnist_label,
)
from modalign.data.corruptions import add_noise, drop_modalities, unalign
from modalign.data.dataset import MultiViewBatch, MultiViewDataset
from modalign.data.downloads import download, fetch, sha256_file
from modalign.data.errors import ChecksumError, DataError, DownloadError, MissingDataError
from modalign.data.load import BUILTIN, load_dataset, load_file, load_registered
from modalign.data.loaders import encode_labels, load_idx, load_mat, load_npz, load_wav
from modalign.data.preprocess import (
    Chain,
    Identity,
    L2Rows,
    MinMax,
    Preprocessor,
    TfIdf,
    ViewTransform,
    ZScore,
    detect_kind,
    make_transform,
)
from modalign.data.registry import REGISTRY, DatasetInfo, RemoteFile, data_home, get_info, locate

__all__ = [
    "AVDIGITS_FSDD_INDICES",
    "BUILTIN",
    "REGISTRY",
    "AudioFeatures",
    "Chain",
    "ChecksumError",
    "DataError",
    "DatasetInfo",
    "DownloadError",
    "Identity",
    "L2Rows",
    "MinMax",
    "MissingDataError",
    "MultiViewBatch",
    "MultiViewDataset",
    "Preprocessor",
    "RemoteFile",
    "TfIdf",
    "ViewTransform",
    "ZScore",
    "add_noise",
    "avdigits_pairs",
    "data_home",
    "detect_kind",
    "digit_split_indices",
    "download",
    "drop_modalities",
    "encode_labels",
    "fetch",
    "frame_count",
    "fsdd_max_frames",
    "get_info",
    "image_patches",
    "load_avdigits",
    "load_avdigits_tokens",
    "load_dataset",
    "load_digits_label",
    "load_digits_views",
    "load_file",
    "load_idx",
    "load_mat",
    "load_mnist",
    "load_mnist_label",
    "load_npz",
    "load_registered",
    "load_wav",
    "locate",
    "log_mel_frames",
    "log_mel_spectrogram",
    "make_transform",
    "mel_filterbank",
    "mfcc",
    "sha256_file",
    "unalign",
    "waves_to_frames",
]
