"""`reconciler init`: the files a new configuration repository starts from.

    scaffold(ci, source)        the files, as {relative path: text}
    write_scaffold(dir, files)  writes them; refuses if any of them exists (nothing is written)

The CI files are the recipes of `examples/ci/` (shipped in the wheel), with the reconciler's
install source put in; the schema is the one this installation validates with.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from reconciler._version import __version__
from reconciler.errors import ConfigError
from reconciler.resources import ci_example_path, schema_path

CI_CHOICES: Final = ("github", "gitlab", "none")
# Where the reconciler itself is installed from: it is not on PyPI, so a pipeline pins a tag or
# commit of the git repository that hosts it. OWNER is the one word to replace.
DEFAULT_SOURCE: Final = f"https://github.com/OWNER/newstore-reconciler@v{__version__}"

BASE_YAML: Final = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
#
# Shared by every environment here (each one says `extends: _base.yaml`). Not an environment
# itself: files starting with "_" are bases. Mappings merge deeply; scalars and lists replace.

connection:
  # One NewStore API client; the values come from the shell or the CI secrets (these two are
  # also the defaults, written out so that nobody has to guess).
  client_id: ${NEWSTORE_CLIENT_ID}
  client_secret: ${NEWSTORE_CLIENT_SECRET}
  timeout: 10

gates:
  # The sample availability request sent to the webhook right before external ATP goes on:
  # use a product and a fulfillment location of yours.
  webhook_probe:
    products: ["1000061"]
    fulfillment_locations: ["US01"]
"""

EXAMPLE_YAML: Final = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
#
# One file per NewStore tenant; the file name (staging) is the environment's name.
# This one keeps NewStore-managed ATP, what a new tenant has. To adopt a tenant as it is now:
#   reconciler dump staging --out environments/staging.yaml --force
extends: _base.yaml
tenant: acme-staging

external_oms:
  enabled: false
availability_webhook: absent
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""

REHEARSAL_YAML: Final = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
#
# The staging environment, pointed at a local NewStore sandbox to rehearse a change safely.
# Not planned by CI (it is outside environments/). In one terminal: `reconciler sandbox`; then
#   reconciler --environments-dir rehearsal plan
# `rehearsal: true` sends the sandbox's own demo credentials and keys, whatever staging's
# ${...} variables hold (they are not even read), points the availability webhook at the
# sandbox's sample one, and refuses any connection but this machine: a rehearsal never hands a
# real secret to anyone.
extends: ../environments/staging.yaml
rehearsal: true
apply_lock: local  # the sandbox is on this machine: no need for the shared lock
connection:
  base_url: http://127.0.0.1:8765/acme-staging
  token_url: http://127.0.0.1:8765/auth/realms/acme-staging/protocol/openid-connect/token
"""

# With CI, every apply of these tenants shares one lock, a laptop's included (a laptop's file
# lock cannot see a CI runner's apply), and an older commit never goes over a newer one.
SHARED_LOCK_YAML: Final = """
# Every apply of these tenants, from CI or from a laptop, takes one lock per tenant: a ref in
# this repository's git remote (origin; refs/reconciler/locks/...), so two can never interleave.
# It also refuses a checkout older than the commit applied last. Applying needs a clone that
# can push to origin; `reconciler unlock ENV --lock-id ID` breaks a killed runner's lock.
apply_lock: git
"""

GITIGNORE: Final = """\
# newstore-reconciler: apply journals (kept by CI as artifacts) and saved plans
.reconciler/
plan.json
plan.md
plan.err
*.plan.json
"""

PRE_COMMIT: Final = """\
# Validate environment files on every commit, offline and without secrets.
# `pre-commit install` once per clone.
repos:
  - repo: {url}
    rev: {ref}
    hooks:
      - id: reconciler-validate
"""

REQUIREMENTS: Final = """\
# The reconciler version your pipelines run. It is not on PyPI: pin a tag or commit of the
# repository that hosts it (replace OWNER if `reconciler init` could not know it).
newstore-reconciler @ git+{url}@{ref}
"""


def split_source(source: str) -> tuple[str, str]:
    """`https://host/owner/name@ref` → (url, ref)."""
    url, at, ref = source.rpartition("@")
    if not at or not ref or "/" in ref or not re.match(r"^(https|ssh|file)://", url):
        raise ConfigError(
            f"--source {source!r}: expected the git URL of newstore-reconciler and a tag or "
            f"commit, e.g. {DEFAULT_SOURCE}."
        )
    return url, ref


def _github_action(url: str) -> str | None:
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?", url)
    return match[1] if match else None


def scaffold(ci: str, source: str = DEFAULT_SOURCE) -> dict[str, str]:
    """Every file of a new configuration repository, by path relative to its root."""
    url, ref = split_source(source)
    files = {
        "environments/_base.yaml": BASE_YAML + (SHARED_LOCK_YAML if ci != "none" else ""),
        "environments/staging.yaml": EXAMPLE_YAML,
        "rehearsal/staging.yaml": REHEARSAL_YAML,
        "schemas/environment.schema.json": schema_path("environment.schema.json").read_text(),
        ".gitignore": GITIGNORE,
        ".pre-commit-config.yaml": PRE_COMMIT.format(url=url, ref=ref),
    }
    if ci == "none":
        return files
    if ci == "github":
        # The workflows install the reconciler through the action, pinned by its ref.
        action = _github_action(url) or "OWNER/newstore-reconciler"
        for name in ("plan.yml", "apply.yml", "drift.yml"):
            text = ci_example_path(f"github-actions/{name}").read_text()
            text = text.replace(
                f"uses: OWNER/newstore-reconciler@v{__version__}", f"uses: {action}@{ref}"
            )
            files[f".github/workflows/{name}"] = text
    elif ci == "gitlab":
        files[".gitlab-ci.yml"] = ci_example_path("gitlab-ci.yml").read_text()
        files["requirements.txt"] = REQUIREMENTS.format(url=url, ref=ref)
    else:
        raise ConfigError(f"--ci {ci!r}: expected one of {', '.join(CI_CHOICES)}.")
    return files


def write_scaffold(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` under `directory`; refuses, writing nothing, if any of them exists."""
    targets = [directory / name for name in files]
    existing = [str(path) for path in targets if path.exists() or path.is_symlink()]
    if existing:
        raise ConfigError(
            f"refusing to overwrite: {', '.join(existing)} already "
            f"{'exists' if len(existing) == 1 else 'exist'}. `reconciler init` only starts a "
            "new configuration repository; move those files away or choose another directory."
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"cannot initialise {directory}: it is not a directory.")
    for path, text in zip(targets, files.values(), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a file that appeared since the check is still never overwritten.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise ConfigError(f"refusing to overwrite {path}: it appeared meanwhile.") from exc
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}.") from exc
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    return targets
