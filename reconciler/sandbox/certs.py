"""A throwaway TLS certificate for serving the sandbox over HTTPS (tests, the benchmark).

Made by the system's `openssl` (every CI image has it), not by a Python dependency the
product itself never needs: a self-signed P-256 certificate for the loopback names, valid two
days, its key unencrypted beside it. Clients trust it through `connection.ca_bundle` or
SSL_CERT_FILE.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reconciler.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def throwaway_certificate(directory: Path) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` into `directory`; returns their paths. ConfigError when
    `openssl` is missing or fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError("cannot make a throwaway TLS certificate: `openssl` is not installed.")
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = ",".join(
        f"IP:{name}" if name[0].isdigit() or ":" in name else f"DNS:{name}"
        for name in LOOPBACK_NAMES
    )
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    command += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    command += ["-subj", "/CN=reconciler-sandbox", "-addext", f"subjectAltName={names}"]
    command += ["-keyout", str(key), "-out", str(cert)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"openssl could not make a TLS certificate: {result.stderr.strip()}")
    return cert, key
