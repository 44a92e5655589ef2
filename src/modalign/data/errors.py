"""Exceptions raised by the data layer.

Every problem with user data is reported as a :class:`DataError` (a ``ValueError``) whose message
names the file, the view and what is wrong, so that callers can catch one type and users never see a
bare NumPy traceback.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DataError", "DownloadError", "MissingDataError"]


class DataError(ValueError):
    """Invalid or unreadable data: wrong shapes, NaN/inf values, unknown file layout, ..."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file is not where it was looked for; the message says how to fetch it."""


class ChecksumError(DataError):
    """A file's sha256 does not match the registry (or the checksum recorded at first download)."""


class DownloadError(DataError):
    """A download failed or was cut short; no partial file is left behind."""
