"""Named datasets: their files, layouts, public addresses and sha256 checksums.

Files are looked up in a data directory: the ``data_dir`` argument, else the environment variable
``MODALIGN_DATA``, else ``~/.cache/modalign``. A file may lie directly in it (as ``modalign data
fetch`` stores it) or in a subfolder named after the dataset (as in the project's shared data
folder), under its download name or one of its aliases.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from modalign.data.errors import DataError, MissingDataError

__all__ = [
    "CHECKSUM_FILE",
    "DatasetInfo",
    "REGISTRY",
    "RemoteFile",
    "data_home",
    "get_info",
    "locate",
    "locate_file",
    "recorded_checksums",
]

#: Checksums recorded at first download for files whose sha256 the registry does not know.
CHECKSUM_FILE = ".modalign-checksums.json"

_GWMAC = "https://github.com/rucnyz/GWMAC/raw/fa7872505cd9edd60cec332bf6a384e6d7b159d9/data/"
_CZ = (
    "https://github.com/ChuanbinZhang/Multi-view-datasets/raw/"
    "03ead31e6538322e4e0701c3c28a01595c1a015d/"
)
_MNIST = "https://github.com/kelas/mnist/raw/283b387221ab46655e600cfcc25d843bb14292b9/"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes:
        name: file name in the data directory (the name ``fetch`` saves it under).
        url: public address.
        sha256: expected checksum, or None when unknown (recorded at first download).
        aliases: other local file names accepted for the same content.
    """

    name: str
    url: str
    sha256: str | None
    aliases: tuple[str, ...] = ()

    @property
    def local_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset of the registry.

    Attributes:
        name: registry name (``modalign data fetch NAME``).
        files: its files; the first holds the views.
        n_views, n_samples, n_classes: the expected size.
        layout: ``"cell"`` (cell array ``X`` + labels), ``"named"`` (one variable per view) or
            ``"idx"`` (MNIST IDX files).
        view_vars: named layout: the view variables, in order.
        labels_file: index in ``files`` of a separate label file, if any.
        subdirs: subfolders of the data directory searched besides the directory itself.
        description: one line for ``modalign data list``.
    """

    name: str
    files: tuple[RemoteFile, ...]
    n_views: int
    n_samples: int
    n_classes: int
    layout: str = "cell"
    view_vars: tuple[str, ...] | None = None
    labels_file: int | None = None
    subdirs: tuple[str, ...] = ()
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def search_dirs(self) -> tuple[str, ...]:
        return (self.name, *self.subdirs)


def _cz(name: str, file: str, sha: str | None, v: int, n: int, k: int, desc: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        files=(RemoteFile(file, _CZ + file, sha),),
        n_views=v,
        n_samples=n,
        n_classes=k,
        description=desc,
    )


REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="orl",
            files=(
                RemoteFile(
                    "orl.mat",
                    _GWMAC + "orl.mat",
                    "d8a86561f92496258512794b8a2f678610d065d05794ed19f8f170f63387c551",
                ),
                RemoteFile(
                    "orl_y.mat",
                    _GWMAC + "orl_y.mat",
                    "d2a0bc400a73161c5525f548dabae5e4e20a1d81e8b81b1b164e3a62f7f7229d",
                ),
            ),
            n_views=2,
            n_samples=400,
            n_classes=40,
            labels_file=1,
            description="ORL faces as used by GWMAC/OTM (the two views are identical)",
            notes=("the two views are numerically identical: one view duplicated",),
        ),
        DatasetInfo(
            name="orl4",
            files=(
                RemoteFile(
                    "ORL.mat",
                    "https://github.com/danyangzz/PR2022-AMCGM/raw/"
                    "168bc06933bd952bf3d0366c315a8225037ecb31/data/ORL.mat",
                    "304ea70b3c7a735130a8bc59b34f0ade69781d77cacdd69101e148a8a1f7f946",
                    aliases=("ORL_4view_AMCGM.mat",),
                ),
            ),
            n_views=4,
            n_samples=400,
            n_classes=40,
            subdirs=("orl",),
            description="ORL faces, four genuinely different descriptors",
        ),
        DatasetInfo(
            name="prokaryotic",
            files=(
                RemoteFile(
                    "prokaryotic.mat",
                    _GWMAC + "prokaryotic.mat",
                    "03cb4ac0b175d606d8d276b124b2a784eb8d6c4bafb89d9cd521d238139996a1",
                ),
            ),
            n_views=3,
            n_samples=551,
            n_classes=4,
            layout="named",
            view_vars=("text", "proteome_comp", "gene_repert"),
            description="prokaryotic species: text, proteome composition, gene repertoire",
        ),
        DatasetInfo(
            name="3sources",
            files=(
                RemoteFile(
                    "3-sources.mat",
                    _GWMAC + "3-sources.mat",
                    "a294acc86d3aec9c567491eb16e9500f68c2d478a116e43fa5befacb746e1462",
                ),
            ),
            n_views=3,
            n_samples=169,
            n_classes=6,
            layout="named",
            view_vars=("bbc", "guardian", "reuters"),
            description="news stories reported by BBC, Guardian and Reuters (word counts)",
        ),
        _cz(
            "movies",
            "Movies.mat",
            "7922e27da06361c0d74b5dd6477e6485d1f73a96cf0164e280e5b38864ffcbad",
            2,
            617,
            17,
            "movies: keywords and actors",
        ),
        _cz(
            "handwritten",
            "Handwritten.mat",
            "6092a69891afa22785bffd5a4348f52d49a764aa5d40751ec2c4dc0f6ed48a44",
            6,
            2000,
            10,
            "UCI handwritten digits, six descriptors",
        ),
        _cz(
            "bbcsport",
            "BBCSport.mat",
            "98dbf2c405c132cc7e6558fd5da904626e7069915c510392e71baeaf4925d708",
            2,
            544,
            5,
            "BBC Sport articles, two text views",
        ),
        _cz(
            "msrc",
            "MSRC-v5.mat",
            "3b3adfad0b4e484cef1c1ecd64ec887ddde9f7655ed638e2fee1f047ae2c9ff0",
            5,
            210,
            7,
            "MSRC-v1 object images, five descriptors",
        ),
        _cz(
            "100leaves",
            "100Leaves.mat",
            "4af6d9f6588a720df763580d273dc08014476ac5f64570b0bada8b63b9952f45",
            3,
            1600,
            100,
            "one hundred plant species: shape, margin, texture",
        ),
        _cz(
            "webkb",
            "WebKB.mat",
            "a1a3e7c50dac79ade224d556e1ff371a190fbb56c174eadfe05bad74bcec52ea",
            2,
            1051,
            2,
            "WebKB web pages: page text and inbound-link text",
        ),
        _cz(
            "reuters1200",
            "Reuters-1200.mat",
            "cf549b72a66d7418a639a940899993c052bab9ec868fd493451cf85cd0d81d14",
            5,
            1200,
            6,
            "Reuters documents in five languages",
        ),
        _cz(
            "caltech7",
            "Caltech101-7.mat",
            None,
            6,
            1474,
            7,
            "Caltech101, 7 classes, six image descriptors",
        ),
        DatasetInfo(
            name="mnist",
            files=(
                RemoteFile(
                    "t10k-images-idx3-ubyte.gz",
                    _MNIST + "t10k-images-idx3-ubyte.gz",
                    "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
                ),
                RemoteFile(
                    "t10k-labels-idx1-ubyte.gz",
                    _MNIST + "t10k-labels-idx1-ubyte.gz",
                    "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
                ),
            ),
            n_views=1,
            n_samples=10000,
            n_classes=10,
            layout="idx",
            description="MNIST test split (the image half of avdigits)",
        ),
    )
}


def data_home(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$MODALIGN_DATA``, else ``~/.cache/modalign``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MODALIGN_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "modalign"


def get_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (case-insensitive); DataError listing the names if unknown."""
    info = REGISTRY.get(name.lower())
    if info is None:
        raise DataError(f"unknown dataset '{name}'; registered: {', '.join(REGISTRY)}")
    return info


def _candidates(info: DatasetInfo, file: RemoteFile, root: Path) -> list[Path]:
    dirs = [root, *(root / d for d in info.search_dirs)]
    return [d / n for d in dirs for n in file.local_names]


def locate_file(info: DatasetInfo, file: RemoteFile, data_dir: str | Path | None = None) -> Path:
    """Where ``file`` of dataset ``info`` lies; MissingDataError naming the places looked at."""
    root = data_home(data_dir)
    cands = _candidates(info, file, root)
    for c in cands:
        if c.is_file():
            return c
    places = ", ".join(str(c) for c in cands)
    raise MissingDataError(
        f"dataset '{info.name}': file {file.name} not found (looked for {places}); run "
        f"`modalign data fetch {info.name}` to download it into {root} (set MODALIGN_DATA or "
        "pass --data-dir to use another folder)"
    )


def locate(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Paths of every file of dataset ``name``, in registry order (MissingDataError if absent)."""
    info = get_info(name)
    return [locate_file(info, f, data_dir) for f in info.files]


def recorded_checksums(data_dir: str | Path | None = None) -> dict[str, str]:
    """Checksums recorded at first download (file name -> sha256) in the data directory."""
    path = data_home(data_dir) / CHECKSUM_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable checksum record ({exc}); delete it") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: checksum record is not a JSON object; delete it")
    return {str(k): str(v) for k, v in data.items()}
