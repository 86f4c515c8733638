"""Writing files so that a crash never leaves a half-written file that looks whole, and refusing,
before any work is done, an output place that cannot be written."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mask2anomaly.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(what: str, path: Path, err: OSError) -> UserError:
    return UserError(f"{what}{path}: cannot write there ({err.strerror or err})")


def _probe(folder: Path, what: str, shown: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _cannot_write(what, shown, err) from None


def ensure_writable_file(path: str | os.PathLike[str], what: str = "") -> Path:
    """``path`` as a :class:`Path` after checking that a file can be written there (its folder is
    created if missing); raise a one-line :class:`UserError` naming ``what`` (e.g. ``"--json "``)
    and the path otherwise: a folder in the way, a file where a folder is needed, no permission."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{what}{target}: is a folder, expected a file name")
    _probe(target.parent, what, target)
    return target


def ensure_writable_dir(path: str | os.PathLike[str], what: str = "") -> Path:
    """``path`` as a :class:`Path` after checking that files can be written in that folder (created
    if missing); raise a one-line :class:`UserError` naming ``what`` and the path otherwise."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what}{folder}: is a file, expected a folder")
    _probe(folder, what, folder)
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path`` atomically
    (with the permissions a newly created file would get).

    On any exception the temporary file is removed and ``path`` is left as it was; a failure to
    write (no permission, no space, a folder in the way) is raised as a one-line
    :class:`UserError` naming ``path``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise _cannot_write("", target, err) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _cannot_write("", target, err) from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_png_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` (``(H, W)`` or ``(H, W, 3)`` uint8) as a PNG via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_jpeg_atomic(path: str | os.PathLike[str], array: np.ndarray, quality: int = 90) -> None:
    """Write ``array`` (``(H, W, 3)`` uint8) as a JPEG via a temporary file and a rename (for
    pictures to look at: a 2048x1024 overlay encodes in milliseconds, a PNG in a fifth of a second)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=quality)


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def json_safe(value: object) -> object:
    """NaN -> None (JSON null), recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "--out ") -> Iterator[None]:
    """Hold ``folder/.lock`` while a run writes into ``folder``: a second run into a folder in use
    is refused with one line; the lock of a run that died (its process is gone) is taken over."""
    lock = folder / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                raise UserError(
                    f"{what}{folder}: another run (process {holder}) is writing there; "
                    "wait for it or choose another folder"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:
        raise UserError(f"{what}{folder}: cannot take the folder's lock ({lock})")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
