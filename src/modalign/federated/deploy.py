"""Real processes: the Flower app folder, SuperLink and SuperNode command lines.

A deployment is Flower's own: one ``flower-superlink`` (the server machine), one
``flower-supernode`` per agent (each on the machine that holds its modality), and
``flwr run APP CONNECTION`` to start a run. The app folder holds only a ``pyproject.toml``
naming :data:`modalign.federated.apps.server_app` / ``client_app`` and the run config (every
:class:`FederatedConfig` setting, so that ``flwr run --run-config`` can override any of
them); ``modalign`` itself must be installed on every machine (nothing is installed at run
time: ``--disable-runtime-dependency-installation``). docs/federated.md shows the commands.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from modalign.federated.config import FederatedConfig

APP_NAME = "modalign-federated-otm"


def _toml_value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def flower_app_toml(config: FederatedConfig) -> str:
    """The ``pyproject.toml`` of the Flower app for ``config`` (its run config defaults)."""
    settings = "\n".join(f"{k} = {_toml_value(v)}" for k, v in config.to_run_config().items())
    return f"""# Flower app of modalign's federated OTM (written by `modalign federated app`).
# Start it with `flwr run <this folder> <connection>`; override settings with
# `--run-config 'epochs=50 seed=1'`.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "0.1.0"
description = "Federated OTM: agents that each hold one modality (modalign)"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "modalign"

[tool.flwr.app.components]
serverapp = "modalign.federated.apps:server_app"
clientapp = "modalign.federated.apps:client_app"

[tool.flwr.app.config]
{settings}
"""


def write_flower_app(folder: str | Path, config: FederatedConfig) -> Path:
    """Write the Flower app folder (``folder/pyproject.toml``) and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(flower_app_toml(config), encoding="utf-8")
    return folder


def connection_toml(
    name: str, address: str, *, insecure: bool = False, root_certificates: str | None = None
) -> str:
    """A SuperLink connection for ``$FLWR_HOME/config.toml`` (what ``flwr run`` reads).

    ``address`` is the SuperLink's HTTP API (``host:port``, 9093 in Flower's docs)."""
    if not insecure and root_certificates is None:
        raise ValueError("a TLS connection needs root_certificates (the CA that signed the link)")
    lines = ["[superlink]", f"default = {json.dumps(name)}", "", f"[superlink.{name}]"]
    lines.append(f"address = {json.dumps(address)}")
    if insecure:
        lines.append("insecure = true")
    else:
        lines.append(f"root-certificates = {json.dumps(str(root_certificates))}")
    return "\n".join(lines) + "\n"


def _tls(insecure: bool, certificates: Sequence[str | None], what: str) -> list[str]:
    if insecure:
        return ["--insecure"]
    if any(c is None for c in certificates):
        raise ValueError(f"{what} needs TLS certificates, or --insecure for a local test")
    return []


def superlink_command(
    *,
    host: str = "0.0.0.0",
    port: int = 9093,
    insecure: bool = False,
    ca_certfile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    enable_supernode_auth: bool = False,
) -> list[str]:
    """``flower-superlink`` serving its HTTP APIs on ``host:port``, with TLS unless
    ``insecure``, and with runtime dependency installation off.

    ``enable_supernode_auth``: only SuperNodes whose public key was registered with
    ``flwr supernode register KEY.pub CONNECTION`` may join (Flower needs TLS for it)."""
    if enable_supernode_auth and insecure:
        raise ValueError("SuperNode authentication needs TLS: drop --insecure, give certificates")
    cmd = ["flower-superlink", *_tls(insecure, [ca_certfile, certfile, keyfile], "SuperLink")]
    if not insecure:
        cmd += [
            "--ssl-ca-certfile",
            str(ca_certfile),
            "--ssl-certfile",
            str(certfile),
            "--ssl-keyfile",
            str(keyfile),
        ]
    if enable_supernode_auth:
        cmd.append("--enable-supernode-auth")
    return [
        *cmd,
        "--disable-runtime-dependency-installation",
        "--host",
        host,
        "--port",
        str(port),
    ]


def supernode_command(
    modality: int,
    superlink: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    preprocess: str | None = None,
    view: int | None = None,
    checkpoint: str | None = None,
    port: int = 9094,
    insecure: bool = False,
    root_certificates: str | None = None,
    auth_private_key: str | None = None,
) -> list[str]:
    """``flower-supernode`` for the agent of ``modality``: its data location goes in the
    node config (it overrides the run's; ``view`` is the view of that file the agent holds,
    default ``modality``), ``checkpoint`` is where it keeps its model across
    restarts, ``port`` is its local runtime API. ``auth_private_key``: the agent's private
    key (OpenSSH format, NIST curve, e.g. ``ssh-keygen -t ecdsa -b 384``) for a SuperLink
    with SuperNode authentication, where its public key is registered."""
    if auth_private_key is not None and insecure:
        raise ValueError("SuperNode authentication needs TLS: drop --insecure, give the CA")
    node = [f"modality={int(modality)}"]
    for key, value in (
        ("dataset", dataset),
        ("data-dir", data_dir),
        ("preprocess", preprocess),
        ("checkpoint", checkpoint),
    ):
        if value is not None:
            node.append(f"{key}={json.dumps(str(value))}")
    if view is not None:
        node.append(f"view={int(view)}")
    cmd = ["flower-supernode", *_tls(insecure, [root_certificates], "SuperNode")]
    if not insecure:
        cmd += ["--root-certificates", str(root_certificates)]
    if auth_private_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_private_key)]
    return [*cmd, "--superlink", superlink, "--port", str(port), "--node-config", " ".join(node)]


def shell(cmd: Sequence[str]) -> str:
    """A command line as one copyable shell string."""
    return shlex.join(cmd)
