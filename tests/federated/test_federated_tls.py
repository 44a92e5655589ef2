"""The TLS recipe of docs/federated.md on 127.0.0.1, with real processes.

A throwaway CA signs a certificate for 127.0.0.1/localhost (made here with ``cryptography``,
in the test's temporary folder; no key is kept). The SuperLink serves TLS with it:

* agents given the CA (``--root-certificates``) join, and ``flwr run`` (with the CA too)
  runs two rounds to results, with local DP on: the server's own record of the replies it
  received holds only the quantities the privacy accounting covers and declared metadata;
* a SuperNode without the CA (the system's trust store) or with another CA fails the TLS
  handshake, logs the certificate error and exits without joining;
* with SuperNode authentication on, a SuperNode whose public key was registered
  (``flwr supernode register``) comes online, one with an unknown key or none is refused.

Every process is stopped by its PID, and no helper may outlive it (conftest.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from modalign.federated import FederatedConfig, PrivacyReport  # noqa: E402
from modalign.federated.deploy import (  # noqa: E402
    connection_toml,
    superlink_command,
    supernode_command,
)
from modalign.federated.protocol import INFO_KEYS  # noqa: E402
from modalign.methods import OTMConfig  # noqa: E402

ROWS, LATENT = 551, 16  # prokaryotic's rows, the codes' width of the run
SCORE_KEYS = ["accuracy", "ari", "nmi", "purity"]
TLS_REFUSED = "CERTIFICATE_VERIFY_FAILED"
#: A refused SuperNode gives up after this many retries (Flower exits at once today).
RETRIES = ["--max-retries", "2"]


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway PKI: the CA, the link's certificate and key, another CA, and
    two SuperNode key pairs (OpenSSH format, P-384) for authentication."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path
    node_keys: tuple[Path, Path]


def _ca(name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost signed by it, another CA, and
    two SuperNode keys, written to a temporary folder."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert = _ca("modalign test CA", now)
    _, other_cert = _ca("another CA", now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.crt": _pem(ca_cert),
        "other-ca.crt": _pem(other_cert),
        "server.pem": _pem(cert),
        "server.key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for name in ("node-a", "node-b"):
        # What `ssh-keygen -t ecdsa -b 384` writes: Flower reads OpenSSH keys on NIST curves.
        node_key = ec.generate_private_key(ec.SECP384R1())
        files[name] = node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        files[f"{name}.pub"] = node_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)
    return Pki(
        folder / "ca.crt",
        folder / "server.pem",
        folder / "server.key",
        folder / "other-ca.crt",
        (folder / "node-a", folder / "node-b"),
    )


def start_tls_link(deployment, pki: Pki, *, auth: bool = False) -> str:
    """A SuperLink serving TLS with the test's certificate on a free port; its address.
    Without ``auth`` through ``modalign federated server`` (the recipe's command)."""
    port = deployment.free_port()
    if auth:
        cmd = superlink_command(
            host="127.0.0.1",
            port=port,
            ca_certfile=str(pki.ca),
            certfile=str(pki.server_cert),
            keyfile=str(pki.server_key),
            enable_supernode_auth=True,
        )
    else:
        cmd = ["modalign", "federated", "server", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--ssl-ca-certfile", str(pki.ca), "--ssl-certfile", str(pki.server_cert)]
        cmd += ["--ssl-keyfile", str(pki.server_key)]
    deployment.start("superlink", cmd)
    deployment.wait_for(lambda: deployment.listening(port), 120, "the SuperLink to listen")
    return f"127.0.0.1:{port}"


def refused(deployment, name: str, reason: str, timeout: float = 240) -> None:
    """Process ``name`` exits with an error, and its log says ``reason``."""
    proc = deployment.procs[name]
    deployment.wait_for(lambda: proc.poll() is not None, timeout, f"{name} to give up")
    log = deployment.log(name)
    assert proc.returncode != 0, log[-2000:]
    assert reason in log, log[-2000:]


def assert_only_accounted_replies(log: dict, agents: int, rounds: int) -> None:
    """Under local DP, every reply the server received (its own record, ``received`` in
    ``federated.json``) holds the noised codes with the budget spent, the declared metadata,
    and the four scores once at the end; nothing else (no loss terms)."""
    info = sorted(INFO_KEYS)
    budget = sorted(f"privacy.{f.name}" for f in fields(PrivacyReport))
    codes = {"arrays": {"codes": [ROWS, LATENT]}, "config": info, "metrics": budget}
    assert log["received"] == {
        "codes": [{"layout": codes, "replies": agents * (rounds + 1)}],
        "train": [
            {"layout": {"arrays": {}, "config": info, "metrics": []}, "replies": agents * rounds}
        ],
        "evaluate": [
            {"layout": {"arrays": {}, "config": info, "metrics": SCORE_KEYS}, "replies": agents}
        ],
    }
    for m in range(agents):  # every release counted, at the run's settings
        assert log["privacy"][str(m)]["releases"] == rounds + 1
        assert log["privacy"][str(m)]["noise_multiplier"] == 1.0
    assert all(h["losses"] == {} and "losses_withheld" in h for h in log["history"])


@pytest.mark.slow
def test_tls_run_under_local_dp_and_supernodes_without_the_ca_refused(
    shared_data, deployment, pki, tmp_path
):
    link = start_tls_link(deployment, pki)
    # Refused first: they would be connected when the run starts, had the link let them in
    # (the server asks every connected node; they would hold modality 2).
    deployment.start(
        "no-ca",  # the system's trust store only
        ["flower-supernode", "--superlink", link, "--port", str(deployment.free_port())]
        + ["--node-config", "modality=2", *RETRIES],
    )
    deployment.start(
        "other-ca",
        supernode_command(2, link, port=deployment.free_port(), root_certificates=str(pki.other_ca))
        + RETRIES,
    )
    for m in range(2):
        deployment.start_agent(m, link, shared_data, "--root-certificates", str(pki.ca))
    out = tmp_path / "out"
    config = FederatedConfig(
        dataset="prokaryotic",
        otm=OTMConfig(
            n_clusters=4, latent_dim=LATENT, epochs=2, warmup_epochs=1, cluster_restarts=2
        ),
        out=str(out),
        n_agents=2,
        round_timeout=120.0,
        dp_clip=1.0,
        dp_noise=1.0,
    )
    run = deployment.start_run(config, link, root_certificates=pki.ca)
    for name in ("no-ca", "other-ca"):
        refused(deployment, name, TLS_REFUSED)
    deployment.wait_for(lambda: (out / "results.json").exists(), 600, "the run's results")
    assert run.wait(timeout=120) == 0
    log = json.loads((out / "federated.json").read_text())
    # Two rounds, the second mixed, with exactly the two agents that hold the CA.
    assert [h["codes_from"] for h in log["history"]] == [[0, 1], [0, 1]]
    assert log["history"][1]["objective"] is not None
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["metric"] for r in records} == set(SCORE_KEYS)
    assert_only_accounted_replies(log, agents=2, rounds=2)


def online_nodes(deployment) -> list[dict]:
    """``flwr supernode ls`` of the link: its registered SuperNodes and their status."""
    done = deployment.flwr("supernode", "ls", "local", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["nodes"]


@pytest.mark.slow
def test_supernode_authentication_admits_registered_keys_only(deployment, pki):
    link = start_tls_link(deployment, pki, auth=True)
    (deployment.home / "config.toml").write_text(
        connection_toml("local", link, root_certificates=str(pki.ca))
    )
    known, unknown = pki.node_keys
    done = deployment.flwr("supernode", "register", f"{known}.pub", "local", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    node_id = str(json.loads(done.stdout)["node-id"])

    def node(name: str, key: Path | None, *extra: str) -> None:
        cmd = supernode_command(
            0,
            link,
            port=deployment.free_port(),
            root_certificates=str(pki.ca),
            auth_private_key=None if key is None else str(key),
        )
        deployment.start(name, [*cmd, *extra])

    node("unknown-key", unknown, *RETRIES)
    node("no-key", None, *RETRIES)  # Flower would make it a key and register it itself
    node("registered", known)
    refused(deployment, "unknown-key", "Failed to activate SuperNode")
    refused(deployment, "no-key", "must be registered")
    deployment.wait_for(
        lambda: [n["status"] for n in online_nodes(deployment)] == ["online"],
        240,
        "the registered SuperNode to come online",
    )
    nodes = online_nodes(deployment)
    assert [n["node-id"] for n in nodes] == [node_id]  # the only node the link knows
    assert deployment.procs["registered"].poll() is None


def test_authentication_options_of_the_command_lines():
    tls = {"ca_certfile": "ca.crt", "certfile": "s.pem", "keyfile": "s.key"}
    link = superlink_command(**tls, enable_supernode_auth=True)
    assert "--enable-supernode-auth" in link and "--enable-supernode-auth" not in (
        superlink_command(**tls)
    )
    node = supernode_command(0, "link:9093", root_certificates="ca.crt", auth_private_key="k")
    assert node[node.index("--auth-supernode-private-key") + 1] == "k"
    # Flower refuses authentication without TLS; say so before starting anything.
    with pytest.raises(ValueError, match="needs TLS"):
        superlink_command(insecure=True, enable_supernode_auth=True)
    with pytest.raises(ValueError, match="needs TLS"):
        supernode_command(0, "link:9093", insecure=True, auth_private_key="k")
