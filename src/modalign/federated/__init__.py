"""Federated OTM: agents that each hold one modality, a server that mixes their codes.

Install with ``pip install 'modalign[federated]'`` (Flower with its simulation engine).

* :mod:`~modalign.federated.agent`, :mod:`~modalign.federated.protocol`,
  :mod:`~modalign.federated.server`, :mod:`~modalign.federated.privacy`: the logic, with no
  Flower import (importable and testable without Flower).
* :mod:`~modalign.federated.apps`: the Flower ``ClientApp`` / ``ServerApp``;
  :mod:`~modalign.federated.simulation`: Flower's simulation engine on one machine.

See docs/federated.md for the protocol, what the server sees, and deployment.
"""

from modalign.federated.agent import Agent, ModalityData, load_modality
from modalign.federated.config import FederatedConfig
from modalign.federated.privacy import PrivacyReport, privacy_report
from modalign.federated.protocol import Payload, answer
from modalign.federated.server import (
    Coordinator,
    FederatedResult,
    LocalTransport,
    Transport,
    run_federated,
)

__all__ = [
    "Agent",
    "Coordinator",
    "FederatedConfig",
    "FederatedResult",
    "LocalTransport",
    "ModalityData",
    "Payload",
    "PrivacyReport",
    "Transport",
    "answer",
    "load_modality",
    "privacy_report",
    "run_federated",
]
