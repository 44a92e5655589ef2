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
* it shows a progress bar with the latest losses when asked.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalign.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["plain_settings", "train_epochs"]


def plain_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as plain values (numbers, strings, None), comparable after a weights-only
    checkpoint round trip; anything else (tuples, devices, ...) is kept as its ``str``."""
    return {
        k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
        for k, v in settings.items()
    }


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
        checkpoint: file written after every epoch; resumed from when it exists.
        stop_after: end after this many epochs of this call (to test interruption); the model
            then holds the weights of the last epoch trained, not the best one.

    Raises:
        ValueError: the checkpoint was written for other settings, or cannot be read.
    """
    plain = plain_settings(settings)
    history: list[dict[str, float]] = []
    best = {"loss": math.inf, "epoch": -1, "bad": 0, "state": None}
    start, stopped = 0, False
    if checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, device)
        if saved.get("settings") != plain:
            raise ValueError(
                f"checkpoint {checkpoint} was written for other settings; remove it or use "
                "another output folder"
            )
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        start, stopped = int(saved["epoch"]), bool(saved["stopped"])
        history = [dict(h) for h in saved["history"]]
        best = dict(saved["best"])
    bar = None
    if progress and not stopped and start < epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start, desc=desc, leave=False)
    for done, epoch in enumerate(range(start, epochs), start=1):
        if stopped:
            break
        model.train()
        log = dict(run_epoch(epoch))
        if validate is not None:
            model.eval()
            with torch.no_grad():
                val = float(validate())
            log["val_loss"] = val
            if val < best["loss"]:
                best = {"loss": val, "epoch": epoch, "bad": 0, "state": _state(model)}
            else:
                best["bad"] += 1
            stopped = patience is not None and best["bad"] >= patience
        history.append(log)
        if checkpoint is not None:
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
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in log.items() if k in ("loss", "val_loss")})
        if stop_after is not None and done >= stop_after:
            if bar is not None:
                bar.close()
            return history
    if bar is not None:
        bar.close()
    if validate is not None and best["state"] is not None:
        model.load_state_dict(copy.deepcopy(best["state"]))
    return history
