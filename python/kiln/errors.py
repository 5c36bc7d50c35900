# SPDX-License-Identifier: MIT
"""kiln's exception hierarchy: everything the package raises on purpose is a
KilnError (or a TypeError/ValueError for arguments of the wrong kind)."""
from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Result


class KilnError(Exception):
    """A libkiln call failed: ``errno`` (positive) and kiln's own message."""

    def __init__(self, message: str, errno: int = _errno.EIO) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{self.message} [{name}: {os.strerror(self.errno)}]"


class LibraryNotFound(KilnError):
    """libkiln.so could not be loaded; the message lists where it looked."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _errno.ENOENT)


class ClosedError(KilnError):
    """The sandbox (or process) was already closed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed", _errno.EBADF)


class Timeout(KilnError):
    """A wait ran out of time. For a command's own ``timeout`` the command
    was killed and ``result`` holds what it printed until then."""

    def __init__(self, message: str, result: "Optional[Result]" = None) -> None:
        super().__init__(message, _errno.ETIMEDOUT)
        self.result = result


class BootError(KilnError):
    """The sandbox did not come up; ``console`` is the tail of its console."""

    def __init__(self, message: str, errno: int, console: str) -> None:
        super().__init__(message, errno)
        self.console = console

    def __str__(self) -> str:
        tail = "\n".join(self.console.splitlines()[-15:])
        base = super().__str__()
        return f"{base}\n--- console tail ---\n{tail}" if tail else base


class CommandError(KilnError):
    """``run(..., check=True)``: the command did not exit with status 0."""

    def __init__(self, result: "Result") -> None:
        what = (
            f"killed by signal {result.signal}"
            if result.signal
            else f"exit status {result.exit_code}"
        )
        super().__init__(f"command {result.argv!r} failed: {what}", _errno.EIO)
        self.result = result
