"""Compatibility re-exports: the NewStore client now lives in `reconciler.newstore` (one module
per responsibility). Import from there; this module goes away in a later release."""

from __future__ import annotations

from reconciler.newstore.auth import IP_BLOCKED, IP_BLOCKED_HINT
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.limiter import HostLimiter
from reconciler.newstore.probe import probe_webhook
from reconciler.newstore.problem import parse_retry_after, request_id_of
from reconciler.newstore.retries import BACKOFF_SECONDS, MAX_BACKOFF_SECONDS
from reconciler.newstore.transport import RETRYABLE_STATUSES, UNDECODABLE
from reconciler.newstore.transport import ssl_context as _ssl_context

__all__ = [
    "BACKOFF_SECONDS",
    "IP_BLOCKED",
    "IP_BLOCKED_HINT",
    "MAX_BACKOFF_SECONDS",
    "RETRYABLE_STATUSES",
    "UNDECODABLE",
    "HostLimiter",
    "NewStoreClient",
    "_ssl_context",
    "parse_retry_after",
    "probe_webhook",
    "request_id_of",
]
