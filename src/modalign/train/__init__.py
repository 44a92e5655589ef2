"""Training utilities shared by the methods: checkpoints, the epoch loop and data-parallel
helpers."""

from modalign.train.checkpoint import keyed_checkpoint, load_checkpoint, save_checkpoint
from modalign.train.distributed import (
    check_same_on_ranks,
    rank_and_world,
    rank_zero_checkpoint,
    shard_rows,
    sum_gradients,
    sum_on_ranks,
)
from modalign.train.loop import adam, history_path, plain_settings, train_epochs, write_history

__all__ = [
    "adam",
    "check_same_on_ranks",
    "history_path",
    "keyed_checkpoint",
    "load_checkpoint",
    "plain_settings",
    "rank_and_world",
    "rank_zero_checkpoint",
    "save_checkpoint",
    "shard_rows",
    "sum_gradients",
    "sum_on_ranks",
    "train_epochs",
    "write_history",
]
