"""Files written atomically: a temp file in the same folder, fsync, rename; folders swapped whole.

A crash or an error never leaves a half-written file behind, and an existing file is only ever
replaced by a complete one."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from millamusic.core.cache import owner_tag

# --------------------------------------------------------------------------- atomic writes

_RENAME_EXCHANGE, _AT_FDCWD = 2, -100  # <linux/fs.h>, <fcntl.h>


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; os.replace is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success fsync it and os.replace it onto `path`.

    The temp name keeps the real suffix (".mp3", ".flac"...) so encoders that pick the format
    from the extension work. On any exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp{path.suffix}"
    # O_EXCL: never clobber someone else's temp file; mode 0o666 & ~umask like a normal file
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def replace_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put the finished folder `new` at `final`, replacing the folder there (if any) in one step.

    Anyone looking at `final` sees the old folder or the new one, each whole, never a mix. On
    Linux the two are swapped with renameat2(RENAME_EXCHANGE), so `final` is never missing;
    where that is not available the old folder is renamed aside first, leaving a moment with no
    folder at `final` (still never a mix). The old folder is deleted afterwards. `new` must lie
    on the same file system as `final` (beside it). Writers racing for `final`: the last one wins.
    """
    new, final = Path(new), Path(final)
    retired: list[Path] = []
    for _ in range(100):
        try:
            os.rename(new, final)  # nothing at `final` yet (or an empty folder, which POSIX replaces)
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if _exchange(new, final):  # `new` now names the old folder
            retired.append(new)
            break
        old = final.with_name(f".{final.name}.tmp-old-{owner_tag()}-{secrets.token_hex(4)}")  # swept if we die
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue  # another writer moved it away first
        retired.append(old)
    else:
        raise OSError(errno.EBUSY, "other writers keep replacing this folder", str(final))
    fsync_dir(final.parent)
    for old in retired:
        shutil.rmtree(old, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _renameat2():
    """glibc's renameat2, or None (not Linux, no glibc 2.28+)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` atomically; False where the OS or file system cannot (or `b` is gone)."""

    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(code, os.strerror(code), str(b))


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


