"""Federated OTM without Flower: the agents, the server loop, dropouts and the backward pass.

Every test runs the real agent and server objects; :class:`LocalTransport` only replaces the
network by direct calls.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalign.federated import (
    Agent,
    Coordinator,
    FederatedConfig,
    LocalTransport,
    ModalityData,
    Payload,
    load_modality,
    run_federated,
)
from modalign.federated.protocol import arrays_to_batches
from modalign.methods import OTMConfig
from modalign.methods.otm import ot_mix
from modalign.nn import reconstruction_error

N, K, D = 48, 3, 8
#: Prokaryotic: 551 rows, three views (text 438, proteome_comp 3, gene_repert 393), 4 classes.
PROKARYOTIC_ROWS = 551
PROKARYOTIC_DIMS = (438, 3, 393)


def synthetic(dims=(5, 6, 7), n=N, seed=0) -> list[ModalityData]:
    """Three views of ``n`` samples from ``K`` well separated classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    out = []
    for m, dim in enumerate(dims):
        centres = 4 * torch.randn(K, dim, generator=g)
        view = centres[labels] + torch.randn(n, dim, generator=g)
        out.append(ModalityData(m, f"view{m}", view, labels.numpy()))
    return out


def config(**kw) -> FederatedConfig:
    otm = {"n_clusters": K, "latent_dim": D, "epochs": 3, "warmup_epochs": 1, "batch_size": 16}
    otm.update(kw.pop("otm", {}))
    return FederatedConfig(dataset="synthetic", otm=OTMConfig(**otm), **kw)


def test_run_config_round_trip():
    cfg = config(setting="unaligned", seed=3, dp_clip=1.0, dp_noise=2.0, cross_gradients=False)
    flat = cfg.to_run_config()
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert flat["latent-dim"] == D and flat["dp-noise"] == 2.0
    assert FederatedConfig.from_run_config(flat) == cfg
    with pytest.raises(ValueError, match="unknown federated settings"):
        FederatedConfig.from_run_config({**flat, "learning-rate": 1.0})
    with pytest.raises(ValueError, match="cross-gradients are not noised"):
        config(dp_clip=1.0, dp_noise=1.0, cross_gradients=True)


def test_cross_gradients_reproduce_the_centralised_backward_pass():
    """Agents' gradients in their mixed codes, pulled back through the server's mixer and
    pushed into each encoder, equal the encoder gradients of centralised OTM's mixed loss."""
    cfg = config(
        otm={"batch_size": N, "warmup_epochs": 0, "lr": 0.0, "lambda_mix": 0.7},
        cross_gradients=True,
    )
    data = synthetic()
    agents = [Agent(d, cfg) for d in data]
    # Centralised: the same modules, the mixed-code loss through ot_mix, one backward.
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 0)
    order = torch.randperm(N, generator=gen)
    xs = [d.view[order] for d in data]
    codes = [a.autoencoder.encode(x) for a, x in zip(agents, xs)]
    mixed, _ = ot_mix(codes, gen, mixer="fgw", alpha=0.5)
    loss = sum(
        0.7 * reconstruction_error(a.autoencoder.decode(z), x) for a, z, x in zip(agents, mixed, xs)
    )
    expected = torch.autograd.grad(
        loss, [p for a in agents for p in a.autoencoder.encoder.parameters()]
    )
    # Federated: codes out, mixed codes back, gradients in the mixed codes out, gradients in
    # each agent's codes back.
    coord = Coordinator(cfg)
    sent = {a.modality: a.codes(0) for a in agents}
    batches, fed_mixed, _ = coord.mix(0, sent)
    for m in range(3):
        torch.testing.assert_close(torch.from_numpy(fed_mixed[m][0]), mixed[m].detach())
    grads = {}
    for a in agents:
        _, g = a.train(batches[a.modality], fed_mixed[a.modality], 0)  # lr 0: no change
        grads[a.modality] = g
    pulled = coord.backward(grads)
    got = []
    for a in agents:
        x = a.data.view[torch.as_tensor(batches[a.modality][0])]
        surrogate = (a.autoencoder.encode(x) * torch.from_numpy(pulled[a.modality][0])).sum()
        got += torch.autograd.grad(surrogate, list(a.autoencoder.encoder.parameters()))
    for e, f in zip(expected, got):
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-6)


def test_agent_state_round_trip_continues_identically():
    cfg = config()
    data = synthetic()[0]
    a = Agent(data, cfg)
    slots = [np.arange(0, 16), np.arange(16, 32)]
    a.train(slots, None, 0)
    b = Agent(data, cfg)
    b.load_state_tensors(a.state_tensors())
    assert b.releases == a.releases
    a.train(slots, None, 1)
    b.train(slots, None, 1)
    np.testing.assert_array_equal(a.codes(2), b.codes(2))


def test_dp_noise_is_secret_to_the_agent_and_survives_its_state():
    cfg = config(dp_clip=1.0, dp_noise=2.0, cross_gradients=False)
    data = synthetic()[0]
    a, b = Agent(data, cfg), Agent(data, cfg)
    # Same run settings, same weights, different noise: the server cannot rebuild it.
    assert not np.allclose(a.codes(0), b.codes(0))
    c = Agent(data, cfg)
    c.load_state_tensors(a.state_tensors())
    np.testing.assert_array_equal(a.codes(1), c.codes(1))
    assert a.privacy().releases == 2 and a.privacy().epsilon_code > 0


def test_dropped_agent_sits_out_a_round_and_rejoins(tmp_path):
    cfg = config(otm={"epochs": 4}, out=str(tmp_path))
    agents = [Agent(d, cfg) for d in synthetic()]

    def absent(kind: str, round_: int, modality: int) -> bool:
        return modality == 2 and round_ == 2 and kind == "codes"

    result = run_federated(LocalTransport(agents, absent), cfg)
    assert [h["codes_from"] for h in result.history] == [[0, 1, 2], [0, 1, 2], [0, 1], [0, 1, 2]]
    assert result.history[2]["trained"] == [0, 1]
    assert result.history[2]["objective"] is not None  # two agents still mix
    assert sorted(result.scores) == [0, 1, 2]
    log = json.loads((tmp_path / "federated.json").read_text())
    assert log["history"][2]["codes_from"] == [0, 1]
    assert {r["metric"] for r in json.loads((tmp_path / "results.json").read_text())} == {
        "purity",
        "accuracy",
        "nmi",
        "ari",
    }


def test_results_come_from_the_agents_that_answer_the_end(tmp_path):
    cfg = config(otm={"epochs": 2}, out=str(tmp_path))
    agents = [Agent(d, cfg) for d in synthetic()]
    result = run_federated(
        LocalTransport(agents, lambda kind, r, m: m == 1 and r == 2), cfg
    )  # modality 1 gone for the final codes and evaluation
    assert sorted(result.scores) == [0, 2]
    assert sorted(result.clusters) == [0, 2]
    assert (tmp_path / "results.md").exists()


def test_no_agent_at_the_end_is_a_clear_error():
    cfg = config(otm={"epochs": 1})
    agents = [Agent(d, cfg) for d in synthetic()]
    with pytest.raises(RuntimeError, match="no agent sent final codes"):
        run_federated(LocalTransport(agents, lambda kind, r, m: r == 1), cfg)


def test_bad_replies_and_inputs_name_the_modality():
    cfg = config()
    coord = Coordinator(cfg)
    good = Payload(
        arrays={"codes": np.zeros((4, D), np.float32)}, config={"modality": 1, "n-rows": 4}
    )
    with pytest.raises(ValueError, match="modality 1 is claimed by nodes 5 and 6"):
        coord.by_modality({5: good, 6: good}, "codes")
    bad = Payload(
        arrays={"codes": np.zeros((4, D + 1), np.float32)}, config={"modality": 2, "n-rows": 4}
    )
    with pytest.raises(ValueError, match="modality 2: expected codes of shape"):
        coord.by_modality({5: bad}, "codes")
    extra = Payload(
        arrays={"codes": np.zeros((4, D), np.float32), "x": np.zeros((4, 3))},
        config={"modality": 0, "n-rows": 4},
    )
    with pytest.raises(ValueError, match="modality 0"):
        coord.by_modality({5: extra}, "codes")
    with pytest.raises(ValueError, match="modality 0: 10, modality 1: 12"):
        coord.batches(0, {0: 10, 1: 12})
    data = synthetic()[0]
    nan = ModalityData(
        0, "view0", data.view.clone().index_fill_(0, torch.tensor([3]), float("nan")), None
    )
    with pytest.raises(ValueError, match="modality 0 \\(view0\\): NaN"):
        Agent(nan, cfg)
    with pytest.raises(ValueError, match="modality 0: batch 0 names slots outside"):
        Agent(data, cfg).train([np.array([0, N + 5])], None, 0)


@pytest.mark.parametrize("cross_gradients", [False, True])
def test_only_codes_and_numbers_leave_agents_in_process(cross_gradients):
    cfg = config(otm={"epochs": 3}, cross_gradients=cross_gradients)
    agents = [Agent(d, cfg) for d in synthetic()]
    transport = LocalTransport(agents)
    run_federated(transport, cfg)
    assert transport.received
    for kind, _node, payload in transport.received:
        assert set(payload.config) == {"modality", "n-rows", "round"}
        for name, array in payload.arrays.items():
            assert array.dtype == np.float32 and array.shape[-1] == D, (kind, name)
            if kind == "codes":
                assert name == "codes" and array.shape == (N, D)
            else:  # by default nothing but codes; cross-gradients are shaped like codes
                assert cross_gradients, (kind, name)
                assert kind == "train" and name.startswith("grad.") and array.shape == (16, D)


def test_unaligned_agents_use_their_own_content_order(tmp_path):
    cfg = config(setting="unaligned", otm={"epochs": 2})
    data = synthetic()
    # Shuffling a view's rows must not change what its agent sends (slot order is content).
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(5))
    shuffled = ModalityData(0, "view0", data[0].view[perm], data[0].labels[perm.numpy()])
    np.testing.assert_array_equal(Agent(data[0], cfg).codes(0), Agent(shuffled, cfg).codes(0))
    result = run_federated(LocalTransport([Agent(d, cfg) for d in data]), cfg)
    assert sorted(result.scores) == [0, 1, 2]


def test_prokaryotic_agents_load_one_view_each(shared_data):
    views = [load_modality("prokaryotic", m, data_dir=str(shared_data)) for m in range(3)]
    assert [tuple(v.view.shape) for v in views] == [(PROKARYOTIC_ROWS, d) for d in PROKARYOTIC_DIMS]
    with pytest.raises(ValueError, match="modality 3: dataset 'prokaryotic' has 3 views"):
        load_modality("prokaryotic", 3, data_dir=str(shared_data))
    cfg = FederatedConfig(
        dataset="prokaryotic", otm=OTMConfig(n_clusters=4, epochs=2, warmup_epochs=1)
    )
    result = run_federated(LocalTransport([Agent(v, cfg) for v in views]), cfg)
    rec = {r["metric"]: r["value"] for r in result.records}
    assert set(rec) == {"purity", "accuracy", "nmi", "ari"}
    assert 0.25 <= rec["accuracy"] <= 1.0
    assert all(h["codes_from"] == [0, 1, 2] for h in result.history)


def test_arrays_to_batches_refuses_gaps():
    with pytest.raises(ValueError, match="not complete"):
        arrays_to_batches("grad", {"grad.0": np.zeros(1), "grad.2": np.zeros(1)})
