"""Settings of a federated OTM run, and their flat form for Flower's run config.

Flower passes settings as a flat mapping of strings to scalars (the run config of
``pyproject.toml`` / ``flwr run --run-config``, or a message's ``ConfigRecord``). Everything
here round-trips through that form: :meth:`FederatedConfig.to_run_config` and
:meth:`FederatedConfig.from_run_config`. The OTM hyper-parameters are those of
:class:`modalign.methods.OTMConfig` (one round is one OTM epoch), not a second copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from modalign.methods import OTMConfig

SETTINGS = ("aligned", "unaligned")
# OTMConfig fields that do not travel: the device is each process's own business.
_LOCAL_ONLY = ("device",)


@dataclass
class FederatedConfig:
    """A federated OTM run.

    ``dataset``, ``data_dir``, ``preprocess``: where each agent finds its modality (an agent
    process may override them with its node config). ``setting``/``rate``: as in
    ``modalign cluster``. ``seed``: seeds the server's batch and mask draws, each agent's
    initial weights and prior draws, and the clustering head. ``otm``: OTM's settings;
    ``otm.epochs`` is the number of rounds. ``out``: folder for ``results.json``,
    ``results.md`` and ``federated.json`` ("" writes nothing). ``n_agents``: agents the server
    waits for before round 0 (at most ``join_timeout`` seconds). ``round_timeout``: seconds
    a round waits for answers; agents that have not answered by then sit the round out.
    ``dp_clip``/``dp_noise``: local DP of released codes (clip norm and noise multiplier, 0
    for none), accounted at ``dp_delta`` (:mod:`modalign.federated.privacy`).
    ``data_sha256``: the dataset's fingerprint (:func:`modalign.provenance.data_fingerprint`)
    when the launcher can read the data (``modalign federated simulate`` does), "" when only
    the agents can; it keys the results folder with the other settings, and the server never
    sees the data to compute it itself.
    ``cross_gradients``: agents also return the gradient of their mixed-code loss with
    respect to the mixed codes they received (arrays of the codes' shape), and the server
    sends each agent the gradient with respect to its own codes, as centralised OTM's
    backward pass through the mixer does (one round late). Off (the default): only codes
    leave an agent, and no gradient crosses agents (measured: then mixing does not help,
    docs/federated.md).
    """

    dataset: str
    otm: OTMConfig
    setting: str = "aligned"
    rate: float = 1.0
    seed: int = 0
    preprocess: str = "auto"
    data_dir: str = ""
    data_sha256: str = ""
    out: str = ""
    n_agents: int = 0
    join_timeout: float = 300.0
    round_timeout: float = 120.0
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    dp_delta: float = 1e-5
    cross_gradients: bool = False
    method: str = field(default="otm-federated")

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.otm.mixer == "none":
            raise ValueError("federated OTM mixes codes: mixer must be 'fgw' or 'wb'")
        if self.round_timeout <= 0 or self.join_timeout <= 0:
            raise ValueError("round_timeout and join_timeout must be positive seconds")
        if (self.dp_clip > 0) != (self.dp_noise > 0):
            raise ValueError(
                "local DP needs both dp_clip > 0 and dp_noise > 0 (or both 0 to switch it off), "
                f"got dp_clip={self.dp_clip}, dp_noise={self.dp_noise}"
            )
        if self.private and self.cross_gradients:
            raise ValueError(
                "local DP covers released codes only, and cross-gradients are not noised: "
                "switch cross_gradients off to use dp_clip/dp_noise"
            )
        if not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must lie in (0, 1), got {self.dp_delta}")

    @property
    def aligned(self) -> bool:
        return self.setting == "aligned"

    @property
    def rounds(self) -> int:
        return self.otm.epochs

    @property
    def private(self) -> bool:
        return self.dp_noise > 0

    def to_run_config(self) -> dict[str, bool | int | float | str]:
        """The flat form: ``kebab-case`` keys, scalar values (``None`` written as 0)."""
        flat: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "otm"}
        for k, v in asdict(self.otm).items():
            if k not in _LOCAL_ONLY:
                flat[k] = 0 if v is None else v
        return {k.replace("_", "-"): v for k, v in flat.items()}

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> FederatedConfig:
        """Parse the flat form (unknown keys are refused, missing ones take defaults)."""
        given = {str(k).replace("-", "_"): v for k, v in config.items()}
        own = {f.name: f for f in fields(cls) if f.name != "otm"}
        otm_fields = {f.name: f for f in fields(OTMConfig) if f.name not in _LOCAL_ONLY}
        unknown = sorted(set(given) - set(own) - set(otm_fields))
        if unknown:
            raise ValueError(f"unknown federated settings {unknown}")
        if "dataset" not in given or "n_clusters" not in given:
            raise ValueError("federated settings need at least 'dataset' and 'n-clusters'")
        otm_kwargs = {}
        for name in otm_fields:
            if name in given:
                value = given[name]
                if name == "cluster_neighbors" and not value:
                    value = None
                otm_kwargs[name] = _coerce(value, OTMConfig.__dataclass_fields__[name].default)
        kwargs = {name: _coerce(given[name], own[name].default) for name in own if name in given}
        return cls(otm=OTMConfig(**otm_kwargs), **kwargs)


def _coerce(value: Any, default: Any) -> Any:
    """Flower may hand back an int where a float was written (and TOML does too)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return bool(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value
