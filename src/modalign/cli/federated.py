"""``modalign federated``: federated OTM, one agent per modality (needs ``modalign[federated]``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modalign.cli._errors import user_errors

app = typer.Typer(
    help="Federated OTM: agents that each hold one modality; only codes travel.",
    no_args_is_help=True,
)


@app.command("simulate")
def simulate(
    dataset: str = typer.Option(..., help="Registry name (see `modalign data list`) or a file."),
    rounds: int = typer.Option(100, min=1, help="Rounds (one round is one OTM epoch)."),
    warmup: int | None = typer.Option(
        None, min=0, help="Rounds before mixing starts (default R/5)."
    ),
    setting: str = typer.Option("aligned", help="aligned | unaligned"),
    rate: float = typer.Option(
        1.0, min=0.0, max=1.0, help="Unaligned: fraction of each view's rows permuted."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the server's draws, the agents and the head."),
    out: Path = typer.Option(Path("runs/federated"), help="Folder for results."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    cross_gradients: bool = typer.Option(
        False, help="Also return gradients through the mixer (default: only codes leave)."
    ),
    dp_clip: float = typer.Option(0.0, min=0.0, help="Local DP: clip norm of each code (0: off)."),
    dp_noise: float = typer.Option(0.0, min=0.0, help="Local DP: noise multiplier (0: off)."),
    dp_delta: float = typer.Option(1e-5, help="Local DP: delta of the reported epsilon."),
    round_timeout: float = typer.Option(120.0, help="Seconds a round waits for agents."),
    engine: str = typer.Option(
        "flower", help="flower (Flower's simulation engine) | local (same loop, one process)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    """Run the agents and the server on this machine and write results.json / results.md."""
    from modalign.data import load_dataset
    from modalign.data.builtin import refuse_label_view
    from modalign.data.load import check_classes
    from modalign.eval import markdown_table, read_header
    from modalign.federated import Agent, FederatedConfig, LocalTransport, load_modality
    from modalign.federated.server import results_key, run_federated
    from modalign.methods import OTMConfig
    from modalign.provenance import check_provenance, data_fingerprint

    with user_errors(ValueError, FileNotFoundError):
        raw = refuse_label_view(load_dataset(dataset, data_dir=data_dir), "federated OTM")
        if raw.labels is None:
            raise ValueError(f"dataset {dataset!r} has no labels to score clusters against")
        check_classes(raw, "federated OTM")
        if raw.n_views < 2:
            raise ValueError(
                f"{raw.source}: one view; federated OTM needs two or more (one agent per view)"
            )
        config = FederatedConfig(
            dataset=dataset,
            otm=OTMConfig(
                n_clusters=int(raw.labels.max()) + 1,
                epochs=rounds,
                warmup_epochs=max(1, rounds // 5) if warmup is None else warmup,
            ),
            setting=setting,
            rate=rate,
            seed=seed,
            preprocess=preprocess,
            data_dir="" if data_dir is None else str(data_dir.resolve()),
            # The agents' data is read here too: its fingerprint keys the results folder.
            data_sha256=data_fingerprint(raw),
            out=str(out),
            n_agents=raw.n_views,
            round_timeout=round_timeout,
            dp_clip=dp_clip,
            dp_noise=dp_noise,
            dp_delta=dp_delta,
            cross_gradients=cross_gradients,
        )
        # Refused here, before any agent starts (inside Flower's server app the error would
        # only end the simulation); the server checks again for runs started elsewhere.
        check_provenance(out, read_header(out), *results_key(config))
        say = (lambda _m: None) if as_json else typer.echo
        if engine == "local":
            agents = [
                Agent(
                    load_modality(
                        dataset,
                        m,
                        data_dir=config.data_dir,
                        preprocess=preprocess,
                        setting=setting,
                        rate=rate,
                        seed=seed,
                    ),
                    config,
                )
                for m in range(raw.n_views)
            ]
            result = run_federated(LocalTransport(agents), config, say=say)
        elif engine == "flower":
            try:
                from modalign.federated.simulation import simulate as run_simulation
            except ImportError as err:
                raise ValueError(
                    f"Flower is not installed ({err}): pip install 'modalign[federated]'"
                ) from err
            result = run_simulation(config, raw.n_views)
        else:
            raise ValueError(f"engine must be 'flower' or 'local', got {engine!r}")
    if as_json:
        typer.echo(json.dumps(result.records, indent=1))
        return
    typer.echo("")
    typer.echo(markdown_table(result.records))
    for m, p in sorted(result.privacy.items()):
        typer.echo(
            f"modality {m}: {p['releases']:.0f} releases, epsilon per code "
            f"{p['epsilon_code']:.3g}, epsilon dataset {p['epsilon_dataset']:.3g} "
            f"(delta {p['delta']:.0e}); the server saw these noised codes"
        )
    typer.echo(f"results in {out}/results.json, {out}/results.md, {out}/federated.json")


@app.command("app")
def write_app(
    dataset: str = typer.Option(..., help="Dataset name or file, as the agents know it."),
    n_clusters: int = typer.Option(..., min=2, help="Number of clusters K (at least 2)."),
    folder: Path = typer.Option(Path("federated-app"), help="Folder of the Flower app."),
    rounds: int = typer.Option(100, min=1, help="Rounds (one round is one OTM epoch)."),
    warmup: int | None = typer.Option(
        None, min=0, help="Rounds before mixing starts (default R/5)."
    ),
    n_agents: int = typer.Option(0, min=0, help="Agents the server waits for before round 0."),
    setting: str = typer.Option("aligned", help="aligned | unaligned"),
    seed: int = typer.Option(0, min=0, help="Seed of the run."),
    out: str = typer.Option("runs/federated", help="Results folder on the server machine."),
    round_timeout: float = typer.Option(120.0, help="Seconds a round waits for agents."),
    cross_gradients: bool = typer.Option(False, help="Gradients through the mixer."),
    dp_clip: float = typer.Option(0.0, min=0.0, help="Local DP: clip norm of each code (0: off)."),
    dp_noise: float = typer.Option(0.0, min=0.0, help="Local DP: noise multiplier (0: off)."),
) -> None:
    """Write the Flower app folder for `flwr run` (settings become its run config)."""
    from modalign.federated import FederatedConfig
    from modalign.federated.deploy import write_flower_app
    from modalign.methods import OTMConfig

    with user_errors(ValueError):
        config = FederatedConfig(
            dataset=dataset,
            otm=OTMConfig(
                n_clusters=n_clusters,
                epochs=rounds,
                warmup_epochs=max(1, rounds // 5) if warmup is None else warmup,
            ),
            setting=setting,
            seed=seed,
            out=out,
            n_agents=n_agents,
            round_timeout=round_timeout,
            cross_gradients=cross_gradients,
            dp_clip=dp_clip,
            dp_noise=dp_noise,
        )
    path = write_flower_app(folder, config)
    typer.echo(f"Flower app in {path}; start a run with: flwr run {path} <connection> --stream")


def _check_file(path: str | None, option: str, dry_run: bool) -> None:
    """A ValueError naming ``option`` when its file (a TLS certificate or key) is absent,
    checked before Flower starts and fails on it. Not with ``dry_run``: the printed command
    may be meant for the machine that holds the file."""
    if path is not None and not dry_run and not Path(path).is_file():
        raise ValueError(f"{option}: {path}: no such file")


def _check_address(address: str, option: str) -> None:
    """A ValueError naming ``option`` unless ``address`` is ``host:port`` with a port in
    1..65535 (``[::1]:9092`` for IPv6)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{option} must be host:port (e.g. 10.0.0.5:9092), got {address!r}")


def _exec(cmd: list[str], dry_run: bool) -> None:
    """Replace this process by a Flower command (its PID stays the one that was started)."""
    import os
    import sys

    from modalign.federated.deploy import shell
    from modalign.federated.simulation import OFFLINE_ENV

    if dry_run:
        typer.echo(shell(cmd))
        return
    bin_dir = str(Path(sys.executable).parent)
    # Flower starts helper executables (flower-superexec) by name: they live beside python.
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.update(OFFLINE_ENV)
    os.execvp(cmd[0], cmd)


@app.command("server")
def server(
    host: str = typer.Option("0.0.0.0", help="Address the SuperLink listens on."),
    port: int = typer.Option(9093, min=1, max=65535, help="Port of the SuperLink's HTTP APIs."),
    insecure: bool = typer.Option(False, help="No TLS (local tests only)."),
    ssl_ca_certfile: str | None = typer.Option(None, help="CA certificate (PEM)."),
    ssl_certfile: str | None = typer.Option(None, help="Server certificate (PEM)."),
    ssl_keyfile: str | None = typer.Option(None, help="Server private key (PEM)."),
    enable_supernode_auth: bool = typer.Option(
        False,
        help="Admit only agents whose public key is registered (flwr supernode register); "
        "needs TLS.",
    ),
    dry_run: bool = typer.Option(False, help="Print the command instead of running it."),
) -> None:
    """Run the SuperLink (flower-superlink) that agents connect to and `flwr run` targets."""
    from modalign.federated.deploy import superlink_command

    with user_errors(ValueError):
        for path, option in (
            (ssl_ca_certfile, "--ssl-ca-certfile"),
            (ssl_certfile, "--ssl-certfile"),
            (ssl_keyfile, "--ssl-keyfile"),
        ):
            _check_file(path, option, dry_run)
        cmd = superlink_command(
            host=host,
            port=port,
            insecure=insecure,
            ca_certfile=ssl_ca_certfile,
            certfile=ssl_certfile,
            keyfile=ssl_keyfile,
            enable_supernode_auth=enable_supernode_auth,
        )
    _exec(cmd, dry_run)


@app.command("agent")
def agent(
    modality: int = typer.Option(..., min=0, help="The modality (view index) this agent holds."),
    superlink: str = typer.Option(..., help="host:port of the SuperLink."),
    dataset: str | None = typer.Option(None, help="Dataset name or file (default: the run's)."),
    data_dir: str | None = typer.Option(None, help="Data folder on this machine."),
    preprocess: str | None = typer.Option(None, help="Preprocessing (default: the run's)."),
    view: int | None = typer.Option(
        None, min=0, help="View of the dataset file this agent holds (default: the modality)."
    ),
    checkpoint: str | None = typer.Option(
        None, help="File for the agent's model: a restarted agent resumes from it."
    ),
    port: int = typer.Option(
        9094, min=1, max=65535, help="Local port of this SuperNode's runtime API."
    ),
    insecure: bool = typer.Option(False, help="No TLS (local tests only)."),
    root_certificates: str | None = typer.Option(None, help="CA certificate of the link."),
    auth_supernode_private_key: str | None = typer.Option(
        None,
        help="This agent's private key, whose public key the link registered (with "
        "--enable-supernode-auth on the server).",
    ),
    dry_run: bool = typer.Option(False, help="Print the command instead of running it."),
) -> None:
    """Run one agent (flower-supernode) holding modality K."""
    from modalign.federated.deploy import supernode_command

    with user_errors(ValueError):
        _check_address(superlink, "--superlink")
        _check_file(root_certificates, "--root-certificates", dry_run)
        _check_file(auth_supernode_private_key, "--auth-supernode-private-key", dry_run)
        cmd = supernode_command(
            modality,
            superlink,
            dataset=dataset,
            data_dir=data_dir,
            preprocess=preprocess,
            view=view,
            checkpoint=checkpoint,
            port=port,
            insecure=insecure,
            root_certificates=root_certificates,
            auth_private_key=auth_supernode_private_key,
        )
    _exec(cmd, dry_run)
