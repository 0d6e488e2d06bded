"""Writing the files the tool produces (plan files, dumps, the sandbox's state file).

One writer, so every such file gets the same treatment: a reader or a crash sees either the old
file or the whole new one, never half; a symlink is followed (its target is written, the link
stays a link); anything at the target that is not a regular file (a device, a FIFO, a
directory) is refused rather than replaced; and a new file gets the mode the user's umask
gives, as `open()` would, while a replaced file keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from reconciler.errors import ConfigError, ReconcilerError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)
_TEMP_ATTEMPTS = 100


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    what: str = "",
    error: type[ReconcilerError] = ConfigError,
    mode: int | None = None,
) -> None:
    """Replace the file at `path` (or the file a symlink there points to) with `text`, UTF-8.

    `what` names the file in messages ("plan file"); every failure is an `error` naming
    `path` as the user wrote it. `mode` forces the file's mode (e.g. 0o600 for a file holding
    secrets), new or replaced; the temporary file has it from its creation, so the text is
    never readable by others, not even for a moment.
    """
    shown = f"{what} {path}" if what else str(path)
    target = Path(os.path.realpath(path))
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        pass  # a new file: the umask decides, unless `mode` does
    except OSError as exc:
        raise error(f"cannot write {shown}: {exc.strerror or exc}.") from None
    else:
        for is_kind, kind in _KINDS:
            if is_kind(existing.st_mode):
                raise error(
                    f"refusing to write {shown}: it is {kind}, not a regular file; "
                    "choose a file path."
                )
        mode = stat.S_IMODE(existing.st_mode) if mode is None else mode

    fd, temp = _create_temp(target, shown, error, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise error(f"cannot write {shown}: {exc.strerror or exc}.") from None
        raise
    _sync_directory(target.parent)


def _create_temp(
    target: Path, shown: str, error: type[ReconcilerError], mode: int
) -> tuple[int, Path]:
    """A new file beside `target` (so os.replace stays on one filesystem). Opened with `mode`
    (0o666 like any new file, so the kernel applies the umask: mkstemp's 0o600 would ignore
    it)."""
    for _ in range(_TEMP_ATTEMPTS):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), temp
        except FileExistsError:
            continue
        except OSError as exc:
            raise error(f"cannot write {shown}: {exc.strerror or exc}.") from None
    raise error(f"cannot write {shown}: no free temporary file name beside it.")


def _sync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot open or fsync a directory, and
    # the file is complete either way.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_output_file(path: Path, what: str, *, makes_directories: bool = False) -> None:
    """Refuse an output file that cannot be written before the run reads any tenant, rather
    than after: no directory to create it in (`makes_directories`: the writer creates missing
    ones, so the nearest existing ancestor must be a directory). A directory at `path` itself
    is refused by the writer (and by the CLI option's `click.Path(dir_okay=False)`)."""
    shown = f"the {what} {path}"
    parent = path.absolute().parent
    while makes_directories and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise ConfigError(f"cannot write {shown}: {parent} {why}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {shown}: {parent} is not writable.")


def make_parents(path: str | os.PathLike[str], what: str) -> None:
    """Create the missing directories above `path` (a CI cache or artifact directory that a
    first run has not made yet); a ConfigError names `path` when that fails."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} {path}: {exc.strerror or exc}.") from None
