"""Downloads against a local HTTP server on 127.0.0.1, and the ``modalign data`` commands."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

import modalign.data.downloads as downloads_module
from modalign.data import (
    ChecksumError,
    DownloadError,
    MissingDataError,
    fetch,
    load_dataset,
)
from modalign.data.downloads import download
from modalign.data.registry import CHECKSUM_FILE


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good/<file> the file, /bad/<file> the file with one byte changed,
    /short/<file> a Content-Length for the whole file, then half of it and a closed connection."""

    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[1] not in self.files:
            self.send_error(404, "not here")
            return
        mode, body = parts[0], self.files[parts[1]]
        if mode == "bad":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "short":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(shared_data: Path, tmp_path_factory):
    caltech = tmp_path_factory.mktemp("caltech") / "Caltech101-7.mat"
    x = np.empty((1, 2), dtype=object)
    x[0, 0], x[0, 1] = np.ones((6, 3)), np.arange(12.0).reshape(6, 2)
    scipy.io.savemat(caltech, {"X": x, "Y": np.array([[1], [1], [2], [2], [7], [7]])})
    files = {
        "orl.mat": shared_data / "orl" / "orl.mat",
        "orl_y.mat": shared_data / "orl" / "orl_y.mat",
        "ORL.mat": shared_data / "orl" / "ORL_4view_AMCGM.mat",
        "prokaryotic.mat": shared_data / "prokaryotic" / "prokaryotic.mat",
        "3-sources.mat": shared_data / "3sources" / "3-sources.mat",
        "Caltech101-7.mat": caltech,
    }
    handler = type("Handler", (_Handler,), {"files": {k: p.read_bytes() for k, p in files.items()}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_verifies_and_loads(server, tmp_path):
    paths = fetch("prokaryotic", tmp_path, mirror=f"{server}/good", progress=False)
    assert paths == [tmp_path / "prokaryotic.mat"] and listing(tmp_path) == ["prokaryotic.mat"]
    ds = load_dataset("prokaryotic", tmp_path, verify=True)
    assert ds.dims == [438, 3, 393]
    again = fetch("prokaryotic", tmp_path, mirror=f"{server}/bad", progress=False)
    assert again == paths  # present and verified: nothing downloaded


def test_fetch_two_files_and_alias_name(server, tmp_path):
    fetch("orl", tmp_path, mirror=f"{server}/good", progress=False)
    fetch("orl4", tmp_path, mirror=f"{server}/good", progress=False)
    assert listing(tmp_path) == ["ORL.mat", "orl.mat", "orl_y.mat"]
    assert load_dataset("orl", tmp_path).n_classes == 40
    assert load_dataset("orl4", tmp_path).n_views == 4


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    with pytest.raises(ChecksumError, match="prokaryotic.mat.*sha256 mismatch: expected 03cb4ac0"):
        fetch("prokaryotic", tmp_path, mirror=f"{server}/bad", progress=False)
    assert listing(tmp_path) == []


def test_interrupted_download_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="interrupted"):
        fetch("3sources", tmp_path, mirror=f"{server}/short", progress=False)
    assert listing(tmp_path) == []
    with pytest.raises(DownloadError, match="interrupted"):
        download(f"{server}/short/orl.mat", tmp_path / "x.mat", progress=False)
    assert listing(tmp_path) == []


def test_http_error_and_unreachable_server(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server}/good/nothing.mat", tmp_path / "n.mat", progress=False)
    with pytest.raises(DownloadError, match="download failed"):
        download("http://127.0.0.1:9/x.mat", tmp_path / "y.mat", progress=False, timeout=5)
    assert listing(tmp_path) == []


def test_present_file_with_wrong_content_is_reported(server, tmp_path):
    (tmp_path / "3-sources.mat").write_bytes(b"not the right file")
    with pytest.raises(ChecksumError, match="delete the file or fetch with --force"):
        fetch("3sources", tmp_path, mirror=f"{server}/good", progress=False)
    fetch("3sources", tmp_path, mirror=f"{server}/good", progress=False, force=True)
    assert load_dataset("3sources", tmp_path, verify=True).n_samples == 169


def test_unknown_checksum_is_recorded_at_first_download(server, tmp_path, data_cli):
    app, prefix = data_cli
    fetch("caltech7", tmp_path, mirror=f"{server}/good", progress=False)
    record = json.loads((tmp_path / CHECKSUM_FILE).read_text())
    body = (tmp_path / "Caltech101-7.mat").read_bytes()
    assert record == {"Caltech101-7.mat": hashlib.sha256(body).hexdigest()}
    ds = load_dataset("caltech7", tmp_path, verify=True)
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    out = CliRunner().invoke(app, [*prefix, "list", "--data-dir", str(tmp_path)]).output
    assert "sha256 recorded at first download" in out
    # Later fetches are checked against the recorded checksum.
    (tmp_path / "Caltech101-7.mat").write_bytes(body + b"x")
    with pytest.raises(ChecksumError, match="recorded"):
        fetch("caltech7", tmp_path, mirror=f"{server}/good", progress=False)


def test_cli_fetch_with_mirror_option_and_env(server, tmp_path, data_cli, monkeypatch):
    app, prefix = data_cli
    runner = CliRunner()
    res = runner.invoke(
        app,
        [*prefix, "fetch", "3sources", "--data-dir", str(tmp_path), "--mirror", f"{server}/good"],
    )
    assert res.exit_code == 0, res.output
    assert "3sources: ok" in res.output and listing(tmp_path) == ["3-sources.mat"]
    monkeypatch.setenv("MODALIGN_MIRROR", f"{server}/good")
    monkeypatch.setenv("MODALIGN_DATA", str(tmp_path))
    res = runner.invoke(app, [*prefix, "fetch", "prokaryotic", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "prokaryotic.mat").is_file()


def test_cli_fetch_failures_exit_nonzero_and_leave_nothing(server, tmp_path, data_cli):
    app, prefix = data_cli
    runner = CliRunner()
    base = [*prefix, "fetch", "prokaryotic", "--data-dir", str(tmp_path), "--no-progress"]
    res = runner.invoke(app, [*base, "--mirror", f"{server}/bad"])
    assert res.exit_code == 1 and "sha256 mismatch" in res.output
    res = runner.invoke(app, [*base, "--mirror", f"{server}/short"])
    assert res.exit_code == 1 and "interrupted" in res.output
    assert listing(tmp_path) == []
    res = runner.invoke(app, [*prefix, "fetch", "nosuch", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1 and "unknown dataset 'nosuch'" in res.output


def test_cli_list_shows_presence(shared_data, tmp_path, data_cli):
    app, prefix = data_cli
    res = CliRunner().invoke(app, [*prefix, "list", "--data-dir", str(shared_data)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()

    def status(name: str) -> str:
        i = next(k for k, line in enumerate(lines) if line.startswith(name + " "))
        return lines[i + 1].strip()

    assert status("prokaryotic").startswith("present:")
    assert status("orl4").startswith("present:") and "ORL_4view_AMCGM.mat" in status("orl4")
    assert status("movies") == "missing: Movies.mat"
    assert status("digits") == "built in" and status("avdigits").startswith("present")
    assert "sha256 unknown, recorded at first download" in res.output
    empty = CliRunner().invoke(app, [*prefix, "list", "--data-dir", str(tmp_path)]).output
    assert "present:" not in empty and "missing: orl.mat, orl_y.mat" in empty


def test_missing_dataset_error_says_how_to_fetch(tmp_path):
    with pytest.raises(MissingDataError, match="`modalign data fetch webkb`"):
        load_dataset("webkb", tmp_path)


def test_interruption_by_the_user_leaves_nothing(server, tmp_path, monkeypatch):
    class _Bar:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C arrived after the first chunk

    monkeypatch.setattr(downloads_module, "tqdm", _Bar)
    with pytest.raises(KeyboardInterrupt):
        fetch("prokaryotic", tmp_path, mirror=f"{server}/good")
    assert listing(tmp_path) == []
