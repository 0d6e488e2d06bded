"""The package version, in the base layer: the plan file, the drift report and the scaffold
record it, and `reconciler/__init__.py` (which exports the API) must stay above them."""

__version__ = "0.1.0"
