"""The training guard: a NaN or infinite loss stops training with an error that names the run,
the epoch, the batch and the term, and the checkpoint on disk keeps the last finite epoch."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from modalign.methods import OTM, OTMConfig
from modalign.train import history_path, load_checkpoint, train_epochs
from modalign.train.loop import NonFiniteLossError, check_finite_loss

pytestmark = pytest.mark.usefixtures("one_thread")

N, D = 32, 3


class Poisoned:
    """A linear regression trained by a real epoch function whose inputs become NaN from
    epoch ``bad_epoch`` on (at batch ``bad_batch``), as extreme input would make them.

    ``checked``: the epoch function checks each batch with :func:`check_finite_loss`
    (before backward); otherwise only the epoch's logged mean shows the NaN.
    """

    def __init__(self, bad_epoch: int, bad_batch: int = 1, checked: bool = True):
        torch.manual_seed(0)
        self.model = nn.Linear(D, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(N, D, generator=g), torch.randn(N, 1, generator=g)
        self.bad_epoch, self.bad_batch, self.checked = bad_epoch, bad_batch, checked
        self.after: dict[int, dict[str, torch.Tensor]] = {}  # weights after each epoch

    def run_epoch(self, epoch: int) -> dict[str, float]:
        total = 0.0
        for b, rows in enumerate(torch.arange(N).split(8)):
            x = self.x[rows]
            if epoch >= self.bad_epoch and b == self.bad_batch:
                x = x * float("nan")
            loss = nn.functional.mse_loss(self.model(x), self.y[rows])
            value = check_finite_loss(loss, epoch, b) if self.checked else float(loss.detach())
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += value / 4
        self.after[epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return {"loss": total}

    def train(self, **kw) -> list[dict[str, float]]:
        return train_epochs(
            self.model,
            self.opt,
            self.run_epoch,
            epochs=6,
            settings={"seed": 0},
            desc="poisoned seed 0",
            **kw,
        )


def test_check_finite_loss_returns_the_value_or_names_the_first_bad_part():
    assert check_finite_loss(torch.tensor(1.5), 0) == 1.5
    with pytest.raises(NonFiniteLossError) as info:
        check_finite_loss(
            torch.tensor(float("inf")),
            4,
            7,
            parts={"a of modality 0": torch.tensor(1.0), "b of modality 1": float("inf")},
        )
    err = info.value
    assert (err.term, err.epoch, err.batch) == ("b of modality 1", 4, 7)
    with pytest.raises(NonFiniteLossError, match="'loss' is nan"):
        check_finite_loss(float("nan"), 0, parts={"a": 1.0})  # no part to blame: the sum


def test_a_nan_batch_stops_training_and_the_checkpoint_keeps_the_last_finite_epoch(tmp_path):
    ckpt = tmp_path / "run.pt"
    run = Poisoned(bad_epoch=3)
    with pytest.raises(NonFiniteLossError) as info:
        run.train(checkpoint=ckpt)
    text = str(info.value)
    assert isinstance(info.value, ValueError)  # every command reports ValueErrors in one line
    for part in ("poisoned seed 0", "epoch 3", "batch 1", "'loss' is nan", str(ckpt)):
        assert part in text, (part, text)
    assert "\n" not in text
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == 3 and len(saved["history"]) == 3  # epochs 0-2, not the NaN one
    for key, value in saved["model"].items():
        assert torch.equal(value, run.after[2][key]), key
        assert torch.isfinite(value).all()
    # The weights in memory never took the NaN step either (checked before backward).
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert len(history_path(ckpt).read_text().splitlines()) == 1 + 3
    # Resuming repeats the same failure at the same place, from the same checkpoint.
    with pytest.raises(NonFiniteLossError, match="epoch 3, batch 1"):
        Poisoned(bad_epoch=3).train(checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 3


def test_an_unchecked_epoch_function_is_caught_from_its_logged_mean(tmp_path):
    ckpt = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError) as info:
        Poisoned(bad_epoch=2, checked=False).train(checkpoint=ckpt)
    assert (info.value.epoch, info.value.batch, info.value.term) == (2, None, "loss")
    assert load_checkpoint(ckpt)["epoch"] == 2


def test_a_nan_in_the_first_epoch_leaves_no_file(tmp_path):
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        Poisoned(bad_epoch=0).train(checkpoint=tmp_path / "ckpt" / "run.pt")
    # Not even TensorBoard's event file: it is opened after the first saved epoch.
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_non_finite_validation_loss_is_named():
    run = Poisoned(bad_epoch=99)
    with pytest.raises(NonFiniteLossError) as info:
        run.train(validate=lambda: float("inf") if run.after.keys() >= {1} else 1.0)
    assert (info.value.term, info.value.epoch) == ("val_loss", 1)


def test_the_error_survives_pickling_with_its_message():
    err = NonFiniteLossError("mmd of modality 1", float("nan"), epoch=2, batch=0, method="m")
    back = pickle.loads(pickle.dumps(err))  # a worker process's error (cluster --jobs N)
    assert str(back) == str(err) and back.batch == 0


def test_otm_names_the_modality_and_batch_and_keeps_its_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(40, 4, generator=g)
    cfg = OTMConfig(n_clusters=2, epochs=4, warmup_epochs=4, batch_size=16, latent_dim=4)
    ckpt = tmp_path / "otm.pt"
    OTM(cfg, random_state=0).fit([a, b], checkpoint=ckpt, stop_after=2)
    before = ckpt.read_bytes()
    # The same run resumed on a second view scaled to 1e20: its squared reconstruction
    # error overflows float32 in the first batch of epoch 2.
    with pytest.raises(NonFiniteLossError) as info:
        OTM(cfg, random_state=0).fit([a, b * 1e20], checkpoint=ckpt)
    text = str(info.value)
    assert "otm[fgw] seed 0" in text and "epoch 2, batch 0" in text
    assert "'reconstruction of modality 1' is inf" in text
    assert ckpt.read_bytes() == before


def test_wvae_overflowing_posteriors_are_named_by_the_guard():
    """Inputs near float32's limit overflow the posterior means: the guard names the run, epoch
    and batch (not the W2 solver's input check, which names no run)."""
    from modalign.methods.wvae import WVAE, WVAEConfig

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(40, 4, generator=g)
    cfg = WVAEConfig(latent_dim=4, epochs=2, batch_size=16)
    with pytest.raises(NonFiniteLossError, match=r"wvae seed 0 stopped at epoch 0, batch 0"):
        WVAE(cfg, random_state=0).fit([a, b * 1e38])
    with pytest.raises(TypeError, match="WVAEConfig"):
        WVAE(OTMConfig(n_clusters=2))
