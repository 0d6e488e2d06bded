"""NewStore HTTP client (lands with the client issue)."""

from __future__ import annotations


class NewStoreClient:
    """Placeholder so the settings modules type-check; replaced by the client issue."""
