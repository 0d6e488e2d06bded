"""newstore-reconciler: a NewStore tenant's external-OMS integration, managed as code."""

__version__ = "0.1.0"
