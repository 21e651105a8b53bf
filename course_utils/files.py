"""Files and folders written whole or not at all, and file checksums: the one place for both.

Every writer of the course (checkpoints, datasets, masks, CSVs, downloads) goes through here, so
one rule holds everywhere: the bytes go to a uniquely named temporary file next to the target,
are flushed to disk, and only then renamed into place with ``os.replace``. A kernel interrupted
mid-write (Ctrl-C, a Colab disconnect, a full disk) leaves the previous file untouched instead
of half a file, and two processes writing the same name never write into each other's file.

A leaf module: it imports nothing from the course, so any module may use it.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def create_temporary(path: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, uniquely named file next to ``path``: ``name.<8 hex digits><suffix>``, opened for writing.

    Same folder, because ``os.replace`` is atomic only within one filesystem; a unique name
    (created with ``O_EXCL``), because two processes writing the same target must never write into
    (or rename) each other's file. Returns ``(file descriptor, temporary path)``.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # O_BINARY: Windows only
    while True:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp  # 0o666 minus the umask, like open(..., "wb")
        except FileExistsError:  # 1 chance in 4 billion: draw another name
            continue


def temporary_files(path: str | os.PathLike, suffix: str = ".tmp") -> list[Path]:
    """The temporary files ``create_temporary(path, suffix)`` may have left next to ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if p.name.startswith(path.name + ".") and p.name.endswith(suffix) and p != path)


def write_atomically(path: str | os.PathLike, write: Callable[[IO[Any]], None], *, text: bool = False,
                     suffix: str = ".tmp") -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, then put it at ``path`` in one rename.

    ``f`` is binary, or UTF-8 text with ``newline=""`` (as the ``csv`` module wants) if ``text``.
    The file is flushed and fsync-ed before the rename, so "the" file is never one whose bytes
    are still in a cache. On any error, ``KeyboardInterrupt`` included, the temporary file is
    removed, ``path`` is left as it was, and the error is raised unchanged (``write`` may raise to
    refuse its own result, e.g. a download whose checksum is wrong). Returns ``path``.
    """
    path = Path(path)
    fd, tmp = create_temporary(path, suffix)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it "the" file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def same_files(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when folders ``a`` and ``b`` hold the same file names with the same bytes."""
    a, b = Path(a), Path(b)

    def names(folder: Path) -> list[Path]:
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())

    try:
        files = names(a)
        return b.is_dir() and files == names(b) and all(
            filecmp.cmp(a / name, b / name, shallow=False) for name in files)
    except OSError:  # b was moved away while we looked: not the same
        return False


def write_folder_atomically(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_folder)``, then put ``tmp_folder`` at ``target`` with one rename.

    Readers never see half a folder, and never lose one they are reading: several notebooks
    started at once on an empty data folder all write the same set, and each must keep the
    folder that the first one put there. So:

    - ``target`` already holds exactly the files just written: it is kept, the new copy discarded;
    - ``target`` differs (an explicit write of other content, or a folder that a killed process
      left half-deleted): it is renamed aside, the new folder renamed in, then the old one deleted;
    - a killed writer leaves only a hidden ``.<name>.tmp-*`` folder next to ``target``, never a
      half-written ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a dataset folder is readable like any other
    old = None
    try:
        write(tmp)
        if same_files(tmp, target):
            return target  # keep the folder that others may be reading
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            try:
                os.replace(target, old / target.name)  # atomic: no reader sees a half-deleted folder
            except FileNotFoundError:
                pass  # a parallel writer moved it aside first
        try:
            os.replace(tmp, target)  # atomic on one file system
        except OSError:
            if not target.is_dir():  # no parallel writer got there first: a real error
                raise
            # A parallel writer put its folder there first (a folder cannot replace a non-empty one).
            if not same_files(tmp, target):
                raise RuntimeError(f"{target} was written by another process at the same time, with "
                                   f"other content. Run the cell again.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


def md5sum(path: str | os.PathLike) -> str:
    """The md5 of a file (hex), as torchvision's ``check_integrity`` computes it; read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
