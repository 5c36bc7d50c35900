# SPDX-License-Identifier: MIT
"""kiln: microVM sandboxes from Python, over libkiln.so.

    import kiln

    with kiln.Sandbox(memory_mib=256) as sb:
        r = sb.run(["uname", "-a"])
        print(r.exit_code, r.stdout.decode())

See python/README.md for the whole API; kiln.aio has the asyncio flavour.
"""
from .errors import (
    BootError,
    ClosedError,
    CommandError,
    KilnError,
    LibraryNotFound,
    Timeout,
)
from .sandbox import (
    Console,
    Disk,
    Files,
    HostCheck,
    Network,
    Pool,
    Process,
    Result,
    Sandbox,
    Share,
    host_check,
    network_create,
    network_remove,
    networks,
    quote,
)

__all__ = [
    "BootError",
    "ClosedError",
    "CommandError",
    "Console",
    "Disk",
    "Files",
    "HostCheck",
    "KilnError",
    "LibraryNotFound",
    "Network",
    "Pool",
    "Process",
    "Result",
    "Sandbox",
    "Share",
    "Timeout",
    "host_check",
    "network_create",
    "network_remove",
    "networks",
    "library_version",
    "quote",
]

__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libkiln's version string."""
    from . import _lib

    v = _lib.load().version()
    return v.decode() if v else ""
