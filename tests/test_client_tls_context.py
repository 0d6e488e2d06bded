"""The default TLS context is built once per process, even when a run's first environments
all ask for it at the same moment."""

from __future__ import annotations

import shutil
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import certifi
import pytest

from reconciler.newstore.transport import ssl_context as _ssl_context


def test_simultaneous_first_callers_share_one_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CA file of its own gives this test a context nobody has cached yet.
    bundle = tmp_path / "ca.pem"
    shutil.copyfile(certifi.where(), bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    callers = 16
    start = threading.Barrier(callers)

    def first_call(_: int) -> ssl.SSLContext | bool:
        start.wait()
        return _ssl_context(None)

    with ThreadPoolExecutor(max_workers=callers) as pool:
        contexts = list(pool.map(first_call, range(callers)))
    assert all(isinstance(context, ssl.SSLContext) for context in contexts)
    assert len({id(context) for context in contexts}) == 1
