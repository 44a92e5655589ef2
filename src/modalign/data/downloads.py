"""Download registry files with checksum verification and no partial files left behind.

A file is streamed into a temporary file in the destination directory while its sha256 is
computed; only a complete download whose checksum matches is renamed (atomically) to its final
name. Any failure (network error, short read, checksum mismatch, interruption) deletes the
temporary file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from modalign.data.errors import ChecksumError, DownloadError, MissingDataError
from modalign.data.registry import (
    CHECKSUM_FILE,
    RemoteFile,
    data_home,
    get_info,
    locate_file,
    recorded_checksums,
)

__all__ = ["download", "expected_sha256", "fetch", "sha256_file"]

_CHUNK = 1 << 16


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` to ``dest`` atomically and return the file's sha256.

    Raises:
        DownloadError: the server could not be reached, answered with an error, or sent fewer
            bytes than its ``Content-Length`` announced.
        ChecksumError: the content does not match ``sha256``.
    In every failure case nothing is left at ``dest`` or in its directory.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": "modalign"})
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as r:
                length = r.headers.get("Content-Length")
                total = int(length) if length is not None and length.isdigit() else None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    while chunk := r.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: server answered HTTP {exc.code} ({exc.reason})") from exc
        except http.client.IncompleteRead as exc:
            raise DownloadError(
                f"{url}: download interrupted after {len(exc.partial)} more bytes; "
                "nothing was saved, try again"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: download failed ({exc}); nothing was saved") from exc
        if total is not None and received != total:
            raise DownloadError(
                f"{url}: download interrupted: received {received} of {total} bytes; "
                "nothing was saved, try again"
            )
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(
                f"{dest.name} from {url}: sha256 mismatch: expected {sha256}, got {digest}; the "
                "download was discarded (a wrong mirror or a changed file)"
            )
        os.replace(tmp, dest)
        return digest
    finally:
        # On success the rename consumed tmp; on any failure (KeyboardInterrupt included) it goes.
        tmp.unlink(missing_ok=True)


def _record_checksum(root: Path, name: str, digest: str) -> None:
    record = recorded_checksums(root)
    record[name] = digest
    fd, tmp = tempfile.mkstemp(prefix=".checksums.", suffix=".part", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        os.replace(tmp, root / CHECKSUM_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)


def expected_sha256(file: RemoteFile, data_dir: str | Path | None = None) -> tuple[str | None, str]:
    """The sha256 a file must match and its origin: ``registry``, ``recorded`` or ``none``."""
    if file.sha256 is not None:
        return file.sha256, "registry"
    recorded = recorded_checksums(data_dir).get(file.name)
    return (recorded, "recorded") if recorded else (None, "none")


def _url(file: RemoteFile, mirror: str | None) -> str:
    if mirror:
        return mirror.rstrip("/") + "/" + file.name
    return file.url


def fetch(
    name: str,
    data_dir: str | Path | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download every file of registry dataset ``name`` into the data directory.

    Files already present (directly or in a dataset subfolder) are verified instead. With
    ``mirror`` (or ``$MODALIGN_MIRROR``) each file is fetched from ``<mirror>/<file name>``.
    A file whose sha256 the registry does not know (caltech7) is accepted and its checksum is
    recorded in ``<data_dir>/.modalign-checksums.json``; later fetches are checked against it.
    ``echo`` receives one progress message per file (e.g. ``print``); silent by default.

    Returns:
        The local path of each file, in registry order.

    Raises:
        ChecksumError: a present or downloaded file has the wrong sha256 (downloads are
            discarded; a present file is left alone: delete it or pass ``force``).
        DownloadError: the download failed or was cut short.
    """
    info = get_info(name)
    root = data_home(data_dir)
    mirror = mirror if mirror is not None else os.environ.get("MODALIGN_MIRROR") or None
    paths = []
    for file in info.files:
        expected, origin = expected_sha256(file, root)
        try:
            present: Path | None = locate_file(info, file, root)
        except MissingDataError:
            present = None
        if present is not None and not force:
            if expected is not None:
                digest = sha256_file(present)
                if digest != expected:
                    raise ChecksumError(
                        f"{present}: sha256 mismatch for dataset '{info.name}': expected "
                        f"{expected} ({origin}), got {digest}; delete the file or fetch with "
                        "--force to download it again"
                    )
            if echo:
                echo(f"{info.name}: {file.name} already present at {present}")
            paths.append(present)
            continue
        root.mkdir(parents=True, exist_ok=True)
        dest = root / file.name
        url = _url(file, mirror)
        if echo:
            echo(f"{info.name}: downloading {url}")
        digest = download(url, dest, sha256=expected, progress=progress, timeout=timeout)
        if expected is None:
            _record_checksum(root, file.name, digest)
            if echo:
                echo(
                    f"{info.name}: the registry has no sha256 for {file.name}; recorded "
                    f"{digest} in {root / CHECKSUM_FILE} (first download: trust on first use)"
                )
        paths.append(dest)
    return paths
