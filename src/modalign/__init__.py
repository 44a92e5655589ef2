"""modalign: robust multimodal learning with optimal transport."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modalign")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
