"""Run agents and server in Flower's simulation engine on one machine, offline.

:func:`simulate` starts one virtual SuperNode per modality (the ``partition-id`` is the
modality) and the server app, with Flower's telemetry and update checks off, Ray's usage
statistics off and ``FLWR_HOME`` in a fresh temporary folder unless one is set. Nothing is
installed at run time: the apps are Python objects of this process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

from modalign.federated.config import FederatedConfig
from modalign.federated.server import FederatedResult

#: Environment Flower and Ray read at start-up: no telemetry, no update check, no usage stats.
OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def offline_environment(flwr_home: str | None = None) -> dict[str, str]:
    """Set (and return) the variables of :data:`OFFLINE_ENV` and ``FLWR_HOME``.

    These are Flower's and Ray's own switches; the run's settings travel in the run config.
    """
    os.environ.update(OFFLINE_ENV)
    if flwr_home is not None:
        os.environ["FLWR_HOME"] = str(flwr_home)
    elif "FLWR_HOME" not in os.environ:
        os.environ["FLWR_HOME"] = tempfile.mkdtemp(prefix="modalign-flwr-")
    return {k: os.environ[k] for k in (*OFFLINE_ENV, "FLWR_HOME")}


def simulate(
    config: FederatedConfig,
    n_agents: int,
    *,
    mods: Sequence[Callable] = (),
    flwr_home: str | None = None,
    verbose: bool = False,
) -> FederatedResult:
    """Federated OTM with ``n_agents`` agents (modalities ``0..n_agents-1``) in Flower's
    simulation engine; returns the server's :class:`FederatedResult` (files go to
    ``config.out`` when set). ``mods``: Flower client mods wrapped around every agent."""
    offline_environment(flwr_home)
    from flwr.simulation import run_simulation

    from modalign.federated.apps import make_client_app, make_server_app

    if n_agents < 1:
        raise ValueError(f"n_agents must be positive, got {n_agents}")
    settings = config.to_run_config()
    settings["n-agents"] = n_agents
    results: list[FederatedResult] = []
    run_simulation(
        server_app=make_server_app(settings, on_result=results.append),
        client_app=make_client_app(mods),
        num_supernodes=n_agents,
        backend_config={
            # Every agent gets its own actor, so a slow agent does not hold up the others.
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": n_agents, "include_dashboard": False},
        },
        verbose_logging=verbose,
    )
    if not results:
        raise RuntimeError("the federated simulation ended without results (see the log above)")
    return results[0]
