"""Shared helpers: device names are checked before any work starts."""

from __future__ import annotations

import pytest
import torch

from modalign.methods import OTMConfig, SupervisedConfig
from modalign.utils import check_device


def test_check_device_accepts_the_cpu_and_refuses_what_is_not_here():
    assert check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="not a torch device name"):
        check_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("config", [OTMConfig, SupervisedConfig])
def test_configs_refuse_an_unusable_device(config):
    with pytest.raises(ValueError, match="gpu"):
        config(10, device="gpu")
