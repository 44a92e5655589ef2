"""Training utilities shared by the methods."""

from modalign.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["load_checkpoint", "save_checkpoint"]
