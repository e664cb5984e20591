"""Exceptions of the model catalog, downloads and the model cache; each message says what to do."""

from ..progress import Cancelled


class CatalogError(ValueError):
    """The catalog file is invalid, or a model id/name is unknown."""


class ModelIncompatible(CatalogError):
    """A model needs a newer TextSegment (bundle format) or a text encoder that is not installed."""


class DownloadError(RuntimeError):
    """A download failed (network, HTTP status, timeout, wrong size or SHA-256); the cache was left unchanged."""


class DownloadCancelled(DownloadError, Cancelled):
    """The ``cancel`` callable returned True; the cache was left unchanged (a :class:`Cancelled` like any other)."""


class UnsafeArchive(DownloadError):
    """An archive holds paths outside its target folder, links or special files; nothing was unpacked."""


class VerificationError(CatalogError):
    """An installed or imported model does not match its catalog entry or fails the bundle checks."""
