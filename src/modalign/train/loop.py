"""The epoch loop every method trains with: checkpoints, resumption, early stopping, progress.

A method supplies one function that trains one epoch (drawing its randomness from a generator
seeded by the epoch number, so that a resumed run repeats exactly) and, optionally, one that
returns a validation loss. :func:`train_epochs` does the rest:

* after every epoch it writes a checkpoint atomically (model, optimiser, history, early-stopping
  state and the settings that produced them); if the checkpoint exists when training starts it
  resumes from it, and refuses one written for other settings;
* with a validation loss it stops when the loss has not improved for ``patience`` epochs and
  restores the weights of the best epoch (never selected on test labels: the caller validates on
  a split of the training data);
* it shows a progress bar with the latest losses when asked;
* a NaN or infinite loss (a logged term or the validation loss) stops training with a
  :class:`NonFiniteLossError` naming the run (``desc``), the epoch, the term and, when the
  epoch function checks each batch with :func:`check_finite_loss`, the batch and modality;
  the epoch is not saved, so the checkpoint on disk keeps the last epoch whose losses were
  all finite;
* with a checkpoint it also keeps the training curves beside it: ``{stem}.history.csv``
  (one row per epoch, rewritten atomically after every epoch, so that it is never half
  written and matches the checkpoint after a resume) and, when ``tensorboard`` is installed
  (``pip install 'modalign[tensorboard]'``), TensorBoard event files under
  ``tensorboard/{stem}/`` (``tensorboard --logdir runs/x/checkpoints/tensorboard``).
"""

from __future__ import annotations

import copy
import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalign.provenance import mismatch, plain_settings
from modalign.train.checkpoint import load_checkpoint, save_checkpoint
from modalign.utils import atomic_write

__all__ = [
    "NonFiniteLossError",
    "adam",
    "check_finite_loss",
    "history_path",
    "plain_settings",
    "train_epochs",
    "write_history",
]


class NonFiniteLossError(ValueError):
    """A training or validation loss became NaN or infinite, so training stopped.

    A ``ValueError`` like the data layer's errors: it nearly always comes from the input
    (extreme values) or a setting (a learning rate too large), and every command reports it
    as one line and exit status 2. The message is built from the attributes, which
    :func:`train_epochs` completes (``method``, ``kept``) as the error passes through it;
    they survive pickling, so a worker process's error reads the same.

    Attributes:
        term: the loss term found non-finite (e.g. ``"reconstruction of modality 1"``).
        value: its value (nan, inf or -inf).
        epoch: the 0-based epoch (as in the history CSV); batch: the 0-based batch within
            it, or None when only the epoch's mean was seen.
        method: the run's description (``train_epochs``' ``desc``, e.g. ``"otm[fgw] seed 0"``).
        kept: what the checkpoint on disk holds now, or None without a checkpoint.
    """

    def __init__(
        self,
        term: str,
        value: float,
        *,
        epoch: int | None = None,
        batch: int | None = None,
        method: str | None = None,
        kept: str | None = None,
    ) -> None:
        super().__init__(term, value)
        self.term, self.value = term, float(value)
        self.epoch, self.batch, self.method, self.kept = epoch, batch, method, kept

    def __str__(self) -> str:
        where = [f"epoch {self.epoch}"] if self.epoch is not None else []
        where += [f"batch {self.batch}"] if self.batch is not None else []
        text = f"training {self.method or 'the model'} stopped" + (
            f" at {', '.join(where)} (counted from 0)" if where else ""
        )
        text += f": loss term '{self.term}' is {self.value}"
        if self.kept:
            text += f"; {self.kept}"
        return text + (
            "; lower the learning rate, or look for extreme values or constant features in "
            "the input"
        )


def check_finite_loss(
    loss: torch.Tensor | float,
    epoch: int,
    batch: int | None = None,
    *,
    parts: Mapping[str, torch.Tensor | float] | None = None,
) -> float:
    """``float(loss)``, or a :class:`NonFiniteLossError` when it is NaN or infinite.

    Epoch functions call it on each batch's loss before ``backward``, so that the weights in
    memory never take a non-finite step and the error names the batch. ``parts``: the terms
    ``loss`` is made of (e.g. ``{"reconstruction of modality 1": ...}``), looked at only when
    ``loss`` is not finite, to name the first one that is not; ``"loss"`` is named otherwise.
    The one ``float()`` is the synchronisation the epoch's running mean needs anyway.
    """
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isfinite(value):
        return value
    for name, part in (parts or {}).items():
        v = float(part.detach()) if isinstance(part, torch.Tensor) else float(part)
        if not math.isfinite(v):
            raise NonFiniteLossError(name, v, epoch=epoch, batch=batch)
    raise NonFiniteLossError("loss", value, epoch=epoch, batch=batch)


def _first_non_finite(log: Mapping[str, Any]) -> tuple[str, float] | None:
    """The first logged number that is NaN or infinite, as ``(key, value)``."""
    for key, value in log.items():
        if isinstance(value, Real | torch.Tensor) and not math.isfinite(float(value)):
            return key, float(value)
    return None


def history_path(checkpoint: str | Path) -> Path:
    """The training curves of ``checkpoint``: ``{stem}.history.csv`` in its folder (one file
    per run when several runs share a checkpoint folder)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.history.csv")


def write_history(path: str | Path, history: Sequence[Mapping[str, float]]) -> Path:
    """Write ``history`` as CSV atomically: columns ``epoch`` (0-based, the argument of
    ``run_epoch``) and every logged key in order of first appearance; one row per epoch, an
    empty cell where an epoch did not log a key. Values in full precision (``repr``), so that
    they read back exactly."""
    keys = list(dict.fromkeys(k for log in history for k in log))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch, log in enumerate(history):
        writer.writerow([epoch, *(repr(float(log[k])) if k in log else "" for k in keys)])
    data = buf.getvalue().encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _tensorboard(checkpoint: Path, start: int) -> Any:
    """A ``SummaryWriter`` logging beside ``checkpoint``, or None without ``tensorboard``.

    ``purge_step=start`` on a resume: events a killed run wrote past its last checkpoint are
    dropped by TensorBoard, so the curve shows each epoch once.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed: curves go to the CSV only
        return None
    log_dir = checkpoint.parent / "tensorboard" / checkpoint.stem
    return SummaryWriter(log_dir=str(log_dir), purge_step=start if start > 0 else None)


def adam(
    parameters: Iterable[nn.Parameter], lr: float, weight_decay: float, *, fused: bool
) -> torch.optim.Adam:
    """Adam over ``parameters``; with ``fused``, torch's fused kernel where every parameter
    lives on a device that has one (CPU or CUDA), else the default per-tensor loop.

    The fused kernel updates every weight in one pass: on 3-Sources' wide views (12 M weights,
    one thread) its step is several times faster than the default's
    (``benchmarks/adam_step.py``). It computes the same update up to rounding, but not to the
    bit, so a method that uses it must key its checkpoints by the choice.
    """
    parameters = list(parameters)
    supported = all(p.device.type in ("cpu", "cuda") for p in parameters)
    return torch.optim.Adam(
        parameters, lr=lr, weight_decay=weight_decay, fused=True if fused and supported else None
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_epochs(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    run_epoch: Callable[[int], dict[str, float]],
    *,
    epochs: int,
    settings: Mapping[str, Any],
    validate: Callable[[], float] | None = None,
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
    desc: str = "training",
    stop_after: int | None = None,
    device: torch.device | str = "cpu",
    write: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` for up to ``epochs`` epochs; return the per-epoch history.

    Args:
        run_epoch: trains epoch ``e`` (0-based) and returns its logged losses.
        settings: everything that determines the run (config fields, seed); stored in the
            checkpoint, and a checkpoint with other settings is refused.
        validate: returns the validation loss of the current weights; adds ``val_loss`` to the
            history and enables early stopping.
        patience: epochs without a validation improvement before stopping (None: never stop
            early; the best epoch's weights are still restored at the end).
        checkpoint: file written after every epoch; resumed from when it exists. The
            per-epoch history goes beside it (:func:`history_path`), and to TensorBoard when
            it is installed.
        write: write the checkpoint, its history and TensorBoard files (False: only resume
            from ``checkpoint``, as a data-parallel rank other than 0 does).
        stop_after: end after this many epochs of this call (to test interruption); the model
            then holds the weights of the last epoch trained, not the best one. 0 trains
            nothing: the model keeps its initial (or resumed) weights.

    Raises:
        ValueError: the checkpoint was written for other settings, or cannot be read.
        NonFiniteLossError: a loss of epoch ``e`` is NaN or infinite; that epoch is neither
            saved nor added to the history, so the checkpoint keeps epoch ``e - 1``.
    """
    plain = plain_settings(settings)
    history: list[dict[str, float]] = []
    best = {"loss": math.inf, "epoch": -1, "bad": 0, "state": None}
    start, stopped = 0, False
    if checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, device)
        diff = mismatch(saved.get("settings") or {}, plain)
        if diff:
            raise ValueError(
                f"checkpoint {checkpoint} was written for other settings ({diff}); remove it "
                "or use another output folder"
            )
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        start, stopped = int(saved["epoch"]), bool(saved["stopped"])
        history = [dict(h) for h in saved["history"]]
        best = dict(saved["best"])
    if stop_after is not None and stop_after < 1:
        return history
    bar = board = None
    if progress and not stopped and start < epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start, desc=desc, leave=False)
    # Opened after the first epoch is saved, not before: a run that fails in its first
    # epoch (a NaN, bad input) leaves no event file behind.
    want_board = checkpoint is not None and write and not stopped and start < epochs
    try:
        for done, epoch in enumerate(range(start, epochs), start=1):
            if stopped:
                break
            model.train()
            try:
                log = dict(run_epoch(epoch))
                if validate is not None:
                    model.eval()
                    with torch.no_grad():
                        val = float(validate())
                    log["val_loss"] = val
                # Before the checkpoint below: an epoch with a NaN is never saved.
                if (bad := _first_non_finite(log)) is not None:
                    raise NonFiniteLossError(*bad, epoch=epoch)
            except NonFiniteLossError as err:
                err.epoch = epoch if err.epoch is None else err.epoch
                err.method = err.method or desc
                if checkpoint is not None and write:
                    err.kept = (
                        f"checkpoint {checkpoint} keeps the weights after epoch {epoch - 1}, "
                        "the last with finite losses"
                        if epoch > 0
                        else "no checkpoint was written (no epoch ended with finite losses)"
                    )
                raise
            if validate is not None:
                val = log["val_loss"]
                if val < best["loss"]:
                    best = {"loss": val, "epoch": epoch, "bad": 0, "state": _state(model)}
                else:
                    best["bad"] += 1
                stopped = patience is not None and best["bad"] >= patience
            history.append(log)
            if checkpoint is not None and write:
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "epoch": epoch + 1,
                        "stopped": stopped,
                        "history": history,
                        "best": best,
                        "settings": plain,
                    },
                )
                # After the checkpoint: the curves never run ahead of what a resume restores.
                write_history(history_path(checkpoint), history)
            if want_board and board is None:
                want_board = False  # one try: None when tensorboard is not installed
                board = _tensorboard(Path(checkpoint), epoch)
            if board is not None:
                for k, v in log.items():
                    board.add_scalar(k, float(v), epoch)
                board.flush()  # followable live, and complete if the run is killed
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v:.3g}" for k, v in log.items() if k in ("loss", "val_loss")}
                )
            if stop_after is not None and done >= stop_after:
                return history
    finally:
        if bar is not None:
            bar.close()
        if board is not None:
            board.close()
    if validate is not None and best["state"] is not None:
        model.load_state_dict(copy.deepcopy(best["state"]))
    return history
