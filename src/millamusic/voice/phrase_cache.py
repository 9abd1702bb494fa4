"""The vocal engines' phrase caches on disk (the singer's and kokoro's, under the reuse dir):
entries published atomically, and a phrase's samples read back or None."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from millamusic.core.cache import owner_tag


def publish(path: Path, write: Callable) -> None:
    """Write a cache file atomically with `write(open binary handle)` (parallel renders may share
    the folder). No fsync: a file torn by a crash reads as damaged and is made again. The temp's
    name carries the owner tag, so `cache gc` sweeps what a killed render left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{owner_tag()}.", suffix=".tmp", delete=False) as handle:
        try:
            write(handle)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


def store_samples(path: Path, samples: np.ndarray) -> None:
    """Publish a phrase's samples (mono float32) as a .npy entry."""
    publish(path, lambda handle: np.save(handle, samples, allow_pickle=False))


def load_samples(path: Path | None) -> np.ndarray | None:
    """A phrase's mono float32 samples from the entry `path`, or None (no cache, no entry, a damaged
    entry or one of the wrong kind: sung again and replaced)."""
    if path is None or not path.is_file():
        return None
    try:
        y = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return None
    return y if isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all() else None
