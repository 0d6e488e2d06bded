"""The one atomic writer behind plan files, dumps and the sandbox state file."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from env_helpers import OFF_YAML, WriteEnv, run_cli

from reconciler.errors import ConfigError, PlanFileError
from reconciler.fsutil import atomic_write_text
from reconciler.sandbox import SandboxApp, SandboxConfig
from reconciler.sandbox.state import load_tenants, save_tenants


@pytest.fixture
def restore_umask() -> Iterator[None]:
    """The test sets the process umask with os.umask; this puts the original back."""
    original = os.umask(0o022)
    yield
    os.umask(original)


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(real.name)

    atomic_write_text(link, "new\n")

    assert link.is_symlink()
    assert os.readlink(link) == real.name
    assert real.read_text() == "new\n"
    assert _entries(tmp_path) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to("sub/plan.json")

    atomic_write_text(link, "text\n")

    assert link.is_symlink()
    assert (tmp_path / "sub" / "plan.json").read_text() == "text\n"


def test_plan_out_through_a_symlink_writes_its_target(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory = write_env("acme-eu", "acme-eu", base, OFF_YAML).parent
    plans = directory.parent / "plans"
    plans.mkdir()
    (plans / "current.json").write_text("{}")
    link = directory.parent / "link.json"
    link.symlink_to(plans / "current.json")

    result = run_cli(directory, "plan", "--out", str(link))

    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    written = json.loads((plans / "current.json").read_text())
    assert [env["name"] for env in written["environments"]] == ["acme-eu"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.mkdir()

    with pytest.raises(ConfigError, match=r"refusing to write .*plan\.json: it is a directory"):
        atomic_write_text(target, "text")

    assert target.is_dir()
    assert _entries(tmp_path) == ["plan.json"]


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    # Opening a FIFO with no reader would hang: a refusal that returns at all did not open it.
    with pytest.raises(PlanFileError, match=r"refusing to write plan file .*: it is a FIFO"):
        atomic_write_text(fifo, "text", what="plan file", error=PlanFileError)

    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_device_node_is_refused_and_left_in_place(tmp_path: Path) -> None:
    # A private copy of /dev/null: the test never goes near the real one, even as root.
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    link = tmp_path / "out.json"
    link.symlink_to(device)

    with pytest.raises(ConfigError, match="it is a character device, not a regular file"):
        atomic_write_text(link, "text")

    assert stat.S_ISCHR(device.lstat().st_mode)
    assert link.is_symlink()


@pytest.mark.usefixtures("restore_umask")
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path: Path) -> None:
    os.umask(0o027)
    atomic_write_text(tmp_path / "a.json", "text")
    os.umask(0o002)
    atomic_write_text(tmp_path / "b.json", "text")

    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664


@pytest.mark.usefixtures("restore_umask")
def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old")
    target.chmod(0o600)

    atomic_write_text(target, "new")

    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("the reviewed plan\n")
    # A file-size limit makes the write fail with EFBIG half-way, as a full disk would.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(PlanFileError, match=r"cannot write plan file .*plan\.json: File too"):
            atomic_write_text(target, "x" * 10_000, what="plan file", error=PlanFileError)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

    assert target.read_text() == "the reviewed plan\n"
    assert _entries(tmp_path) == ["plan.json"]


def test_an_interrupted_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    # A lone surrogate cannot be encoded: the write fails after the temp file exists.
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "ok \ud800")

    assert _entries(tmp_path) == []


def test_a_missing_directory_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot write .*missing/out\.yaml: No such file"):
        atomic_write_text(tmp_path / "missing" / "out.yaml", "text")


def test_the_sandbox_state_file_goes_through_the_same_writer(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    app = SandboxApp(SandboxConfig(state_file=state))
    app.seed("acme", {"uses_external_atp": True})
    link = tmp_path / "state-link.json"
    link.symlink_to(state.name)

    save_tenants(link, load_tenants(state))

    assert link.is_symlink()
    assert load_tenants(link)["acme"].snapshot()["uses_external_atp"] is True

    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ConfigError, match="refusing to write sandbox state file"):
        save_tenants(tmp_path / "dir.json", load_tenants(state))
