"""Writing files so that a crash never leaves a half-written file that looks whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path`` atomically
    (with the permissions a newly created file would get).

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_png_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` (``(H, W)`` or ``(H, W, 3)`` uint8) as a PNG via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
