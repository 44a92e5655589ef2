"""Every command refuses malformed options and inputs the same way (issue 16): exit status 2, the
message on stderr (one ``error: ...`` line of ours, or click's usage error naming the option),
no traceback, and nothing written to the output folder. Every refusal comes before any
training, so each row takes milliseconds (the first pays for importing torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modalign.cli import app

runner = CliRunner()

#: The option through which each command writes; the table points it at a fresh folder.
OUT_OPTION = {
    "cluster": "--out",
    "represent": "--out",
    "robustness": "--out",
    "generate": "--out",
    "demo": "--out",
    "federated simulate": "--out",
    "federated app": "--folder",
    "data fetch": "--data-dir",
}
#: How click starts the usage errors of typer's own checks (ranges, unknown options).
USAGE = ("Invalid value for", "No such option", "Missing argument")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of small inputs, good and bad (60 rows, 3 classes unless the name says)."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    a, b, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 3)), np.arange(60) % 3
    with_nan = b.copy()
    with_nan[5, 1] = np.nan
    arrays = {
        "good": {"a": a, "b": b, "labels": y},
        "nan": {"a": a, "b": with_nan, "labels": y},
        "one": {"a": a, "b": b, "labels": np.zeros(60, dtype=int)},
        "tiny": {"a": a[:3], "b": b[:3], "labels": np.arange(3)},
        "nolabels": {"a": a, "b": b},
        "labelview": {"a": a, "label": np.eye(3)[y], "labels": y},
        "oneview": {"a": a, "labels": y},
        "short": {"a": a, "b": b, "labels": y[:50]},
        "flat": {"a": a, "b": b[:, 0], "labels": y},
        "strings": {"a": a, "b": np.full((60, 3), "x"), "labels": y},
        "huge": {"a": a, "b": 1e20 * b, "labels": y},
    }
    for name, content in arrays.items():
        np.savez(d / f"{name}.npz", **content)
    (d / "notes.txt").write_text("not data")
    (d / "broken.npz").write_text("not a zip archive")
    (d / "empty").mkdir()
    return d


def _row(command: str, args: str, expect: str, *, marks=()) -> pytest.param:
    """One case: ``modalign COMMAND ARGS`` ({d}: the inputs folder) must fail with ``expect``."""
    test_id = f"{command.replace(' ', '-')}:{args.replace('{d}/', '')}"
    return pytest.param(command, args, expect, id=test_id, marks=marks)


ROWS = [
    # ---- cluster: inputs
    _row("cluster", "--dataset nosuch", "'nosuch' is neither a dataset name"),
    _row("cluster", "--dataset {d}/missing.npz", "missing.npz: no such file"),
    _row(
        "cluster",
        "--dataset prokaryotic --data-dir {d}/empty",
        "run `modalign data fetch prokaryotic`",
    ),
    _row("cluster", "--dataset {d}/notes.txt", "notes.txt: unsupported file type '.txt'"),
    _row("cluster", "--dataset {d}/broken.npz", "broken.npz: cannot read as a .npz archive"),
    _row(
        "cluster",
        "--dataset {d}/nan.npz",
        "nan.npz: view 'b': 1 NaN or inf value(s) (first at row 5, column 1)",
    ),
    _row(
        "cluster",
        "--dataset {d}/one.npz",
        "one.npz: every label is 0 (one class); clustering needs at least 2 classes (K >= 2)",
    ),
    _row(
        "cluster",
        "--dataset {d}/tiny.npz",
        "tiny.npz: 3 rows for 3 classes; clustering needs at least 2 rows per class (N >= 2K = 6)",
    ),
    _row("cluster", "--dataset {d}/nolabels.npz", "nolabels.npz' has no labels"),
    _row("cluster", "--dataset {d}/labelview.npz", "view 'label' holds the labels themselves"),
    _row("cluster", "--dataset {d}/short.npz", "view 'a' has 60 rows but 'labels' has 50"),
    _row("cluster", "--dataset {d}/flat.npz", "flat.npz: view 'b' is 1-D"),
    _row("cluster", "--dataset {d}/strings.npz", "view 'b': expected a numeric array"),
    _row(
        "cluster",
        "--dataset {d}/oneview.npz --methods otm,kmeans-best-view",
        "oneview.npz: one view; ['otm'] mix modalities",
    ),
    # ---- cluster: options
    _row("cluster", "--dataset {d}/good.npz --methods otm,bogus", "unknown method(s) ['bogus']"),
    _row("cluster", "--dataset {d}/good.npz --methods ,", "--methods names nothing"),
    _row("cluster", "--dataset {d}/good.npz --setting bogus", "setting must be one of"),
    _row("cluster", "--dataset {d}/good.npz --rate 0.5", "--rate applies to --setting unaligned"),
    _row(
        "cluster",
        "--dataset {d}/good.npz --setting unaligned --rate 1.5",
        "Invalid value for '--rate'",
    ),
    _row(
        "cluster",
        "--dataset {d}/good.npz --setting unaligned --methods kmeans-concat",
        "concatenate views and need aligned rows",
    ),
    _row(
        "cluster",
        "--dataset {d}/good.npz --setting partial --known-pairs a,b",
        "--known-pairs must be numbers",
    ),
    _row(
        "cluster",
        "--dataset {d}/good.npz --setting partial --known-pairs 0.5,1.5",
        "shares of known pairs must lie in [0, 1]",
    ),
    _row("cluster", "--dataset {d}/good.npz --seeds 0", "Invalid value for '--seeds'"),
    _row("cluster", "--dataset {d}/good.npz --seeds -1", "Invalid value for '--seeds'"),
    _row("cluster", "--dataset {d}/good.npz --epochs 0", "Invalid value for '--epochs'"),
    _row("cluster", "--dataset {d}/good.npz --jobs 0", "Invalid value for '--jobs'"),
    _row(
        "cluster",
        "--dataset {d}/good.npz --lambda-structure -1",
        "Invalid value for '--lambda-structure'",
    ),
    _row("cluster", "--dataset {d}/good.npz --fusion mean", "fusion must be one of"),
    _row("cluster", "--dataset {d}/good.npz --device bogus", "device 'bogus' is not a torch"),
    _row("cluster", "--dataset {d}/good.npz --preprocess bogus", "unknown preprocessing"),
    # ---- represent
    _row("represent", "--dataset nosuch", "'nosuch' is neither a dataset name"),
    _row("represent", "--dataset {d}/missing.npz", "missing.npz: no such file"),
    _row("represent", "--dataset {d}/nan.npz", "nan.npz: view 'b': 1 NaN or inf value(s)"),
    _row("represent", "--dataset {d}/one.npz", "one.npz: every label is 0 (one class); represent"),
    _row("represent", "--dataset {d}/tiny.npz", "tiny.npz: 3 rows for 3 classes; represent"),
    _row("represent", "--dataset {d}/oneview.npz", "oneview.npz: one view; represent needs"),
    _row("represent", "--dataset {d}/nolabels.npz", "nolabels.npz: no labels"),
    _row("represent", "--dataset {d}/good.npz --methods bogus", "unknown method(s) ['bogus']"),
    _row("represent", "--dataset {d}/good.npz --methods ,", "--methods names nothing"),
    _row("represent", "--dataset {d}/good.npz --subsets a+zzz", "unknown modality 'zzz'"),
    _row("represent", "--dataset {d}/good.npz --seeds 0", "Invalid value for '--seeds'"),
    _row("represent", "--dataset {d}/good.npz --epochs 0", "Invalid value for '--epochs'"),
    _row("represent", "--dataset {d}/good.npz --device bogus", "device 'bogus'"),
    _row("represent", "--dataset {d}/good.npz --preprocess bogus", "unknown preprocessing"),
    # ---- generate
    _row("generate", "--dataset nosuch", "'nosuch' is neither a dataset name"),
    _row("generate", "--dataset {d}/one.npz", "one.npz: every label is 0 (one class); generate"),
    _row("generate", "--dataset {d}/tiny.npz", "tiny.npz: 3 rows for 3 classes; generate"),
    _row("generate", "--dataset {d}/oneview.npz", "oneview.npz: one view; generate needs"),
    _row("generate", "--dataset {d}/good.npz --methods gmc", "unknown method(s) ['gmc']"),
    _row("generate", "--dataset {d}/good.npz --methods ,", "--methods names nothing"),
    _row("generate", "--dataset {d}/good.npz --n-prior 0", "Invalid value for '--n-prior'"),
    _row("generate", "--dataset {d}/good.npz --seeds 0", "Invalid value for '--seeds'"),
    _row("generate", "--dataset {d}/good.npz --device bogus", "device 'bogus'"),
    # ---- robustness
    _row("robustness", "--dataset nosuch", "'nosuch' is neither a dataset name"),
    _row("robustness", "--dataset {d}/missing.npz", "missing.npz: no such file"),
    _row("robustness", "--dataset {d}/nan.npz", "nan.npz: view 'b': 1 NaN or inf value(s)"),
    _row("robustness", "--dataset {d}/nolabels.npz", "nolabels.npz' has no labels"),
    _row("robustness", "--dataset {d}/labelview.npz", "view 'label' holds the labels"),
    _row(
        "robustness",
        "--dataset {d}/one.npz",
        "one.npz: every label is 0 (one class)",
    ),
    _row("robustness", "--dataset {d}/tiny.npz", "tiny.npz: 3 rows for 3 classes; the robustness"),
    _row("robustness", "--dataset {d}/good.npz --models bogus", "unknown model(s) ['bogus']"),
    _row("robustness", "--dataset {d}/good.npz --otm maybe", "--otm must be one of"),
    _row("robustness", "--dataset {d}/good.npz --align maybe", "--align must be one of"),
    _row("robustness", "--dataset {d}/good.npz --alphas x", "--alphas takes comma-separated"),
    _row("robustness", "--dataset {d}/good.npz --alphas -1", "--alphas values must be positive"),
    _row("robustness", "--dataset {d}/good.npz --betas 0", "--betas values must be positive"),
    _row("robustness", "--dataset {d}/good.npz --patience 0", "Invalid value for '--patience'"),
    _row("robustness", "--dataset {d}/good.npz --seeds 0", "Invalid value for '--seeds'"),
    _row("robustness", "--dataset {d}/good.npz --device bogus", "device 'bogus'"),
    _row("robustness", "--dataset {d}/good.npz --preprocess bogus", "unknown preprocessing"),
    # ---- demo (embedded digits: only options can be wrong)
    _row("demo", "--setting partial", "--setting must be one of ['aligned', 'unaligned']"),
    _row("demo", "--seeds 0", "Invalid value for '--seeds'"),
    _row("demo", "--epochs 0", "Invalid value for '--epochs'"),
    _row("demo", "--methods bogus", "unknown method(s) ['bogus']"),
    _row("demo", "--methods ,", "--methods names nothing"),
    # ---- data
    _row("data list", "--bogus", "No such option '--bogus'"),
    _row("data fetch", "", "Missing argument 'NAMES...'"),
    _row("data fetch", "digits", "'digits' is built in, not fetched"),
    _row("data fetch", "prokaryotic --timeout -1", "--timeout must be a positive number"),
    # ---- federated simulate (refused before any agent starts)
    _row("federated simulate", "--dataset nosuch", "'nosuch' is neither a dataset name"),
    _row("federated simulate", "--dataset {d}/nan.npz", "nan.npz: view 'b': 1 NaN"),
    _row("federated simulate", "--dataset {d}/one.npz", "one.npz: every label is 0 (one class)"),
    _row("federated simulate", "--dataset {d}/tiny.npz", "tiny.npz: 3 rows for 3 classes"),
    _row("federated simulate", "--dataset {d}/oneview.npz", "oneview.npz: one view"),
    _row("federated simulate", "--dataset {d}/labelview.npz", "view 'label' holds the labels"),
    _row("federated simulate", "--dataset {d}/good.npz --rounds 0", "Invalid value for '--rounds'"),
    _row("federated simulate", "--dataset {d}/good.npz --setting bogus", "setting must be one of"),
    _row("federated simulate", "--dataset {d}/good.npz --engine bogus", "engine must be 'flower'"),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --setting unaligned --rate 2",
        "Invalid value for '--rate'",
    ),
    _row("federated simulate", "--dataset {d}/good.npz --seed -1", "Invalid value for '--seed'"),
    _row(
        "federated simulate", "--dataset {d}/good.npz --warmup -1", "Invalid value for '--warmup'"
    ),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --dp-clip -1",
        "Invalid value for '--dp-clip'",
    ),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --dp-clip 1",
        "local DP needs both dp_clip > 0 and dp_noise > 0",
    ),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --dp-clip 1 --dp-noise 1 --dp-delta 2",
        "dp_delta must lie in (0, 1)",
    ),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --round-timeout 0",
        "round_timeout and join_timeout must be positive",
    ),
    _row(
        "federated simulate",
        "--dataset {d}/good.npz --engine local --preprocess bogus",
        "unknown preprocessing",
    ),
    # ---- federated app, server, agent (nothing is ever started: --dry-run, or refused first;
    # the table's guard fails the row instead of letting Flower replace the test process)
    _row("federated app", "--dataset x --n-clusters 1", "Invalid value for '--n-clusters'"),
    _row("federated app", "--dataset x --n-clusters 3 --rounds 0", "Invalid value for '--rounds'"),
    _row("federated app", "--dataset x --n-clusters 3 --setting bogus", "setting must be one of"),
    _row("federated app", "--dataset x --n-clusters 3 --seed -1", "Invalid value for '--seed'"),
    _row(
        "federated app",
        "--dataset x --n-clusters 3 --n-agents -1",
        "Invalid value for '--n-agents'",
    ),
    _row(
        "federated app", "--dataset x --n-clusters 3 --dp-clip -1", "Invalid value for '--dp-clip'"
    ),
    _row("federated app", "--dataset x --n-clusters 3 --dp-noise 1", "local DP needs both"),
    _row("federated server", "--dry-run", "SuperLink needs TLS certificates, or --insecure"),
    _row(
        "federated server",
        "--ssl-ca-certfile {d}/ca.pem --ssl-certfile {d}/s.pem --ssl-keyfile {d}/s.key",
        "--ssl-ca-certfile: ",
    ),
    _row("federated server", "--insecure --port 70000 --dry-run", "Invalid value for '--port'"),
    _row(
        "federated agent",
        "--modality -1 --superlink localhost:9093 --insecure --dry-run",
        "Invalid value for '--modality'",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost --insecure --dry-run",
        "--superlink must be host:port",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost:9093 --dry-run",
        "SuperNode needs TLS certificates, or --insecure",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost:9093 --root-certificates {d}/ca.pem",
        "--root-certificates: ",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost:9093 --root-certificates {d}/good.npz "
        "--auth-supernode-private-key {d}/agent.key",
        "--auth-supernode-private-key: ",
    ),
    _row(
        "federated server",
        "--insecure --enable-supernode-auth",
        "SuperNode authentication needs TLS",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost:9093 --insecure --port 0 --dry-run",
        "Invalid value for '--port'",
    ),
    _row(
        "federated agent",
        "--modality 0 --superlink localhost:9093 --insecure --view -2 --dry-run",
        "Invalid value for '--view'",
    ),
]


def _one_line(text: str) -> str:
    """Click's usage error unwrapped from rich's box and line breaks."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def no_exec(monkeypatch):
    """``federated server`` and ``agent`` replace the process by Flower's (``os.execvp``) once
    their checks pass: a row whose check is missing fails here instead of starting Flower."""

    def refuse(*args):
        raise AssertionError(f"would have started {args[0]}: the input was not refused")

    monkeypatch.setattr(os, "execvp", refuse)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the row


@pytest.mark.parametrize(("command", "args", "expect"), ROWS)
def test_malformed_input_is_one_error_and_exit_2(files, tmp_path, no_exec, command, args, expect):
    out = tmp_path / "out"
    argv = [*command.split(), *args.replace("{d}", str(files)).split()]
    if command in OUT_OPTION:
        argv += [OUT_OPTION[command], str(out)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if expect.startswith(USAGE):  # typer's own check: click names the option
        assert expect in _one_line(result.stderr), result.stderr
    else:  # ours: the whole of stderr is one line, and nothing went to stdout
        line = result.stderr.strip()
        assert line.startswith("error: ") and "\n" not in line, result.stderr
        assert expect in line, line
        assert result.stdout == "" or command == "demo", result.stdout  # demo says what it runs
    # Nothing half-written: the folder was not created, or holds nothing.
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


def test_every_command_has_rows():
    """A new command (or sub-command) gets rows here too."""
    commands = {p.values[0] for p in ROWS}
    listed = {c.name for c in app.registered_commands} | {
        f"{g.name} {c.name}"
        for g in app.registered_groups
        for c in g.typer_instance.registered_commands
    }
    assert listed <= commands, listed - commands


def test_a_non_finite_loss_ends_the_run_with_one_line_and_exit_2(files, tmp_path):
    """A second view scaled to 1e20, left unscaled (``--preprocess none``): OTM's squared
    reconstruction error overflows in the first batch; the run stops there, before backward,
    and writes nothing (no results, no checkpoint, no TensorBoard file)."""
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            *("cluster", "--dataset", str(files / "huge.npz"), "--methods", "otm"),
            *("--preprocess", "none", "--epochs", "5", "--seeds", "1", "--out", str(out)),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # The bar is closed (cleared) before the message, which starts its own line.
    line = result.stderr.split("\r")[-1].strip()
    assert line.startswith("error: training otm[fgw] seed 0 stopped at epoch 0, batch 0"), line
    assert "'reconstruction of modality 1' is inf" in line and "\n" not in line
    assert "no checkpoint was written" in line
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
