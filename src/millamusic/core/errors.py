"""One error hierarchy: the errors a user can cause or fix. The CLI maps each class to an exit code
(millamusic.cli.EXIT_CODES); any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import errno
from dataclasses import dataclass


class MillaError(Exception):
    """Base of every error a user can cause or fix."""


@dataclass(frozen=True)
class SpecProblem:
    """One mistake in a spec or lyric file, located as precisely as we can."""

    file: str
    line: int | None  # 1-based
    column: int | None  # 1-based
    field: str
    value: object
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        shown = repr(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{where}: {self.field} = {shown}: {self.message}. Fix: {self.fix}"


class SpecError(MillaError):
    """The spec (or a file it points to) is wrong. Carries every problem found, not the first."""

    def __init__(self, problems: list[SpecProblem], *, subject: str = "the song spec"):
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        # subject: what was wrong, e.g. "the command line" for an option that names no spec at all
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {subject}:\n{lines}")


class EngineUnavailable(MillaError):
    """An engine name is unknown, or known but its extra is not installed."""


class RenderError(MillaError):
    """A stage failed while making audio."""


class ExportError(MillaError):
    """Writing or checking a release file failed."""


# Write failures a user fixes on their machine (not bugs): the plain reason, and what to do about it.
# {where} is the folder being written.
_DISK_FAULTS = {
    errno.ENOSPC: ("the disk is full", ("free space on the disk that holds {where} (or write to another disk), "
                                        "then run the same command again")),
    errno.EDQUOT: ("the disk quota is used up", ("free space within your quota on the disk that holds {where} "
                                                 "(or write to another disk), then run the same command again")),
    errno.EFBIG: ("the file is larger than this system allows (file size limit)",
                  "raise the file size limit (ulimit -f) or write to another file system, then run it again"),
    errno.EROFS: ("the file system is read-only", "write to a writable folder instead of {where}"),
    errno.EACCES: ("permission denied", "make {where} writable for this user, or write somewhere else"),
    errno.EPERM: ("operation not permitted", "make {where} writable for this user, or write somewhere else"),
    errno.EIO: ("an input/output error (a failing disk or a lost network drive?)",
                "check the disk that holds {where}, then run the same command again"),
}


_SHORT_WRITE = ("a write came up short: the disk is full or a file size limit was reached",
                _DISK_FAULTS[errno.ENOSPC][1])


def _short_write(error: OSError) -> bool:
    """numpy reports a full disk as OSError("N requested and M written"), with no errno."""
    return error.errno is None and "written" in str(error)


def is_disk_fault(error: OSError) -> bool:
    """True for an error that only a write gives: a full disk, a used-up quota, a file size limit, a
    read-only file system, a short write (a permission error may be a read: the caller knows)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS) or _short_write(error)


def disk_fault(error: OSError, writing: object, where: object, after: str = "") -> str:
    """One sentence for a failed write: what was being written, the plain reason, `after` (what
    the failure left behind, e.g. "the previous masters are untouched") and the fix.

    "cannot write masters/x/spotify/x.flac: the disk is full (No space left on device). Nothing
    was published. Fix: free space on the disk that holds /out (...), then run the same command again"
    """
    reason, fix = (_SHORT_WRITE if _short_write(error)
                   else _DISK_FAULTS.get(error.errno, (None, "check {where}, then run the same command again")))
    detail = error.strerror or str(error)
    said = f"{reason} ({detail})" if reason else detail
    return f"cannot write {writing}: {said}.{' ' + after if after else ''} Fix: {fix.format(where=where)}"
