"""Training utilities shared by the methods: checkpoints and the epoch loop."""

from modalign.train.checkpoint import keyed_checkpoint, load_checkpoint, save_checkpoint
from modalign.train.loop import history_path, plain_settings, train_epochs, write_history

__all__ = [
    "history_path",
    "keyed_checkpoint",
    "load_checkpoint",
    "plain_settings",
    "save_checkpoint",
    "train_epochs",
    "write_history",
]
