"""The shared epoch loop: bit-exact resumption, settings checks, early stopping, checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import math

import pytest
import torch
from torch import nn

from modalign.train import load_checkpoint, plain_settings, train_epochs

N, D = 48, 3
SETTINGS = {"lr": 0.05, "seed": 0, "dims": (D, 1), "hidden": None}


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N, D, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(N, 1, generator=g)
    return x, y


class Run:
    """A fresh model, optimiser and epoch function, as a new process would build them.

    ``run_epoch`` draws its shuffling and noise from ``torch.Generator().manual_seed(epoch)``
    and stores a copy of the weights after each epoch in ``snapshots``; ``scripted`` (a list
    indexed by epoch) replaces the real validation loss.
    """

    def __init__(self, scripted: list[float] | None = None):
        torch.manual_seed(0)
        self.model = nn.Linear(D, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=SETTINGS["lr"])
        self.x, self.y = _data()
        self.xv, self.yv = self.x[:12] + 0.05, self.y[:12]
        self.scripted = scripted
        self.epoch = None
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def run_epoch(self, epoch: int) -> dict[str, float]:
        gen = torch.Generator().manual_seed(epoch)
        order = torch.randperm(N, generator=gen)
        total = 0.0
        for rows in order.split(16):
            noise = 0.05 * torch.randn(len(rows), D, generator=gen)
            loss = nn.functional.mse_loss(self.model(self.x[rows] + noise), self.y[rows])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) / 3
        self.epoch = epoch
        self.snapshots[epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return {"loss": total}

    def validate(self) -> float:
        if self.scripted is not None:
            return self.scripted[self.epoch]
        return float(nn.functional.mse_loss(self.model(self.xv), self.yv))

    def train(self, **kw) -> list[dict[str, float]]:
        kw.setdefault("epochs", 8)
        kw.setdefault("settings", SETTINGS)
        return train_epochs(self.model, self.opt, self.run_epoch, desc="test", **kw)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- resumption


# (validation, patience, stop_after chunks): no validation; a real validation loss without
# early stopping (best weights restored at the end); scripted losses whose early stop (epoch 5,
# patience 2 after the best at epoch 3) falls after the interruption at epoch 3; and an
# interruption in several pieces.
SCRIPT = [5.0, 4.0, 3.5, 2.0, 2.5, 2.2, 1.0, 0.5]
CASES = {
    "no-validation": (None, None, [3]),
    "validation": ("real", None, [3]),
    "early-stop-after-interruption": ("script", 2, [3]),
    "several-interruptions": ("script", 2, [1, 2, 1]),
    "real-validation-patience": ("real", 1, [2]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_interrupted_and_resumed_run_equals_uninterrupted_run_to_the_bit(tmp_path, case):
    validation, patience, chunks = CASES[case]
    scripted = SCRIPT if validation == "script" else None

    def kwargs(run: Run) -> dict:
        return {"validate": run.validate if validation else None, "patience": patience}

    full = Run(scripted)
    history = full.train(checkpoint=tmp_path / "full.pt", **kwargs(full))
    if validation == "script":
        # The early stop happens after the first interruption point.
        assert len(history) == 6 and len(history) > chunks[0]

    done: list[dict[str, float]] = []
    for chunk in chunks:
        part = Run(scripted)  # a new process: fresh weights, optimiser and epoch function
        out = part.train(checkpoint=tmp_path / "resumed.pt", stop_after=chunk, **kwargs(part))
        assert len(out) == len(done) + chunk  # the history includes the resumed epochs
        assert out[: len(done)] == done
        done = out
    last = Run(scripted)
    resumed = last.train(checkpoint=tmp_path / "resumed.pt", **kwargs(last))

    assert resumed == history  # floats compared exactly
    _assert_same_weights(_weights(last.model), _weights(full.model))
    # The optimiser state was restored too (Adam moments), not only the weights.
    a, b = last.opt.state_dict()["state"], full.opt.state_dict()["state"]
    for i in a:
        for key in a[i]:
            assert torch.equal(a[i][key], b[i][key])
    # And the resumed run did not redo the epochs trained before the interruption.
    assert min(last.snapshots) == sum(chunks)


def test_stop_after_keeps_the_last_epoch_not_the_best():
    run = Run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # the best epoch is the first
    history = run.train(validate=run.validate, patience=None, stop_after=4)
    assert len(history) == 4
    _assert_same_weights(_weights(run.model), run.snapshots[3])
    assert not torch.equal(run.snapshots[3]["weight"], run.snapshots[0]["weight"])


def test_stop_after_zero_trains_nothing():
    run = Run()
    before = _weights(run.model)
    assert run.train(stop_after=0) == []
    assert run.snapshots == {}
    _assert_same_weights(_weights(run.model), before)


def test_resuming_a_finished_run_trains_nothing_and_restores_the_best(tmp_path):
    ckpt = tmp_path / "c.pt"
    first = Run(SCRIPT)
    history = first.train(validate=first.validate, patience=2, checkpoint=ckpt)
    again = Run(SCRIPT)
    history2 = again.train(validate=again.validate, patience=2, checkpoint=ckpt)
    assert history2 == history
    assert again.snapshots == {}  # no epoch was run
    _assert_same_weights(_weights(again.model), first.snapshots[3])


# ---------------------------------------------------------------- settings


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    Run().train(checkpoint=ckpt, stop_after=2)
    before = ckpt.read_bytes()
    # The message names every setting that differs, with both values.
    for other, named in (
        ({**SETTINGS, "lr": 0.1}, r"\(lr=0\.05, not lr=0\.1\)"),
        ({**SETTINGS, "dims": (D, 2)}, r"dims='\(3, 1\)', not dims='\(3, 2\)'"),
        ({"lr": 0.05}, r"hidden=None, not seed=<unset>, dims=<unset>, hidden=<unset>"),
    ):
        run = Run()
        with pytest.raises(ValueError, match="other settings .*" + named):
            run.train(checkpoint=ckpt, settings=other)
        assert run.snapshots == {}  # refused before training
    assert ckpt.read_bytes() == before  # and the checkpoint was left alone


def test_same_settings_with_non_plain_values_are_accepted_after_the_round_trip(tmp_path):
    # Tuples, devices and None do not survive a weights-only load as themselves; the loop
    # compares their plain form, so the same settings resume instead of being refused.
    settings = {**SETTINGS, "device": torch.device("cpu"), "betas": (0.9, 0.999)}
    assert plain_settings(settings)["betas"] == "(0.9, 0.999)"
    assert plain_settings(settings)["hidden"] is None
    ckpt = tmp_path / "c.pt"
    Run().train(checkpoint=ckpt, settings=settings, stop_after=2)
    run = Run()
    history = run.train(checkpoint=ckpt, settings=dict(settings))
    assert len(history) == 8 and min(run.snapshots) == 2


def test_unreadable_checkpoint_is_a_value_error(tmp_path):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        Run().train(checkpoint=ckpt)


# ---------------------------------------------------------------- early stopping


@pytest.mark.parametrize(
    ("script", "patience", "best_epoch", "n_epochs"),
    [
        # Decreasing to epoch 3, then increasing: stops after 2 non-improving epochs.
        ([5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 4.0, 0.1, 0.1, 0.1], 2, 3, 6),
        # A tie is not an improvement: epochs 2 (worse), 3 (equal), 4 (worse) -> stop at 4.
        ([5.0, 3.0, 4.0, 3.0, 6.0, 0.1, 0.1, 0.1, 0.1, 0.1], 3, 1, 5),
        # An improvement resets the count: bad at 2, better at 3, bad at 4 and 5 -> stop.
        ([5.0, 4.0, 6.0, 3.0, 7.0, 8.0, 0.1, 0.1, 0.1, 0.1], 2, 3, 6),
        # patience=None: all epochs run, the best one (epoch 2) is restored.
        ([5.0, 4.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], None, 2, 10),
    ],
)
def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(
    script, patience, best_epoch, n_epochs
):
    run = Run(script)
    history = run.train(epochs=10, validate=run.validate, patience=patience)
    assert len(history) == n_epochs
    assert sorted(run.snapshots) == list(range(n_epochs))
    assert [h["val_loss"] for h in history] == script[:n_epochs]
    assert all(math.isfinite(h["loss"]) for h in history)
    _assert_same_weights(_weights(run.model), run.snapshots[best_epoch])
    # Not trivially true: the weights moved after the best epoch.
    assert not torch.equal(
        run.snapshots[best_epoch]["weight"], run.snapshots[n_epochs - 1]["weight"]
    )


def test_without_validation_the_last_weights_are_kept():
    run = Run()
    history = run.train(epochs=5, patience=2)  # patience without validate: never stops
    assert len(history) == 5 and all("val_loss" not in h for h in history)
    _assert_same_weights(_weights(run.model), run.snapshots[4])
    # The model learnt the synthetic regression.
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


# ---------------------------------------------------------------- checkpoint file


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    folder = tmp_path / "out"
    ckpt = folder / "run.pt"  # the folder is created
    run = Run(SCRIPT)
    history = run.train(validate=run.validate, patience=2, checkpoint=ckpt, progress=True)
    # No temporary files left: the checkpoint, its curves, and TensorBoard's when installed.
    curves = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    assert sorted(p.name for p in folder.iterdir()) == ["run.history.csv", "run.pt", *curves]
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["epoch"] == len(history) == 6
    assert saved["stopped"] is True
    assert saved["history"] == history
    assert saved["settings"] == plain_settings(SETTINGS)
    assert saved["best"]["epoch"] == 3 and saved["best"]["loss"] == 2.0
    assert saved["best"]["bad"] == 2
    _assert_same_weights(saved["best"]["state"], run.snapshots[3])
    # The stored model is the last epoch's (the best is restored only in memory).
    _assert_same_weights(saved["model"], run.snapshots[5])
    assert set(saved["optimiser"]) == {"state", "param_groups"}
    assert load_checkpoint(ckpt)["epoch"] == 6


# ---------------------------------------------------------------- training curves


def _read_csv(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(path, encoding="utf-8") as f:
        columns = f.readline().strip().split(",")
    return columns, rows


def _assert_csv_is(path, history: list[dict[str, float]], keys: list[str]) -> None:
    columns, rows = _read_csv(path)
    assert columns == ["epoch", *keys]
    assert [int(r["epoch"]) for r in rows] == list(range(len(history)))
    for row, log in zip(rows, history, strict=True):
        # Written in full precision: the floats read back exactly.
        assert {k: float(row[k]) for k in keys if row[k] != ""} == log


def test_history_csv_holds_every_epoch_and_stays_consistent_after_a_resume(tmp_path):
    ckpt = tmp_path / "run.pt"
    run = Run(SCRIPT)
    part = run.train(validate=run.validate, checkpoint=ckpt, stop_after=3)
    path = tmp_path / "run.history.csv"
    _assert_csv_is(path, part, ["loss", "val_loss"])
    last = Run(SCRIPT)
    history = last.train(validate=last.validate, checkpoint=ckpt)
    assert len(history) == 8
    _assert_csv_is(path, history, ["loss", "val_loss"])
    # Kept when the checkpoint is deleted after the run (as robustness does).
    ckpt.unlink()
    _assert_csv_is(path, history, ["loss", "val_loss"])


def test_history_csv_columns_follow_the_keys_as_they_appear(tmp_path):
    """A method that logs a term only after its warm-up (OTM's mixed reconstruction): an
    empty cell before, the column from its first epoch on."""
    run = Run()

    def run_epoch(epoch: int) -> dict[str, float]:
        log = run.run_epoch(epoch)
        return log if epoch < 2 else {**log, "mixed": 0.25 * epoch}

    history = train_epochs(
        run.model, run.opt, run_epoch, epochs=4, settings=SETTINGS, checkpoint=tmp_path / "m.pt"
    )
    columns, rows = _read_csv(tmp_path / "m.history.csv")
    assert columns == ["epoch", "loss", "mixed"]
    assert [r["mixed"] for r in rows] == ["", "", "0.5", "0.75"]
    _assert_csv_is(tmp_path / "m.history.csv", history, ["loss", "mixed"])


def test_tensorboard_events_hold_the_history(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ckpt = tmp_path / "run.pt"
    Run(SCRIPT).train(checkpoint=ckpt, stop_after=3)  # interrupted, then resumed
    last = Run(SCRIPT)
    history = last.train(checkpoint=ckpt)
    events = EventAccumulator(str(tmp_path / "tensorboard" / "run")).Reload()
    assert events.Tags()["scalars"] == ["loss"]
    scalars = events.Scalars("loss")
    # One point per epoch, across both processes; TensorBoard stores float32.
    assert [s.step for s in scalars] == list(range(8))
    assert [s.value for s in scalars] == pytest.approx([h["loss"] for h in history], rel=1e-6)
