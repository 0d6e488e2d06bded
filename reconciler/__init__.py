"""newstore-reconciler: a NewStore tenant's external-OMS integration, managed as code."""

from reconciler._version import __version__

__all__ = ["__version__"]
