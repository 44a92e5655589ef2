"""Training utilities shared by the methods: checkpoints and the epoch loop."""

from modalign.train.checkpoint import load_checkpoint, save_checkpoint
from modalign.train.loop import plain_settings, train_epochs

__all__ = ["load_checkpoint", "plain_settings", "save_checkpoint", "train_epochs"]
