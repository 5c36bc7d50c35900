# SPDX-License-Identifier: MIT
"""asyncio flavour: the same sandboxes, every blocking call on a worker
thread so the event loop keeps running.

    import asyncio, kiln.aio

    async def main():
        async with kiln.aio.Sandbox() as sb:
            results = await asyncio.gather(*(sb.run(["echo", str(i)]) for i in range(8)))

    asyncio.run(main())
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any, AsyncIterator, Callable, Optional, Tuple, TypeVar

from . import sandbox as _sync
from .sandbox import Result

T = TypeVar("T")

# Blocking kiln calls run here: each wait holds a thread, so more of them
# than the default executor's few.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="kiln-aio")


async def _call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kw))


class Process:
    """An async view of kiln.Process: ``async for stream, data in p``."""

    def __init__(self, p: _sync.Process) -> None:
        self._p = p
        self._it = iter(p)

    @property
    def argv(self):
        return self._p.argv

    def __aiter__(self) -> AsyncIterator[Tuple[str, bytes]]:
        return self

    async def __anext__(self) -> Tuple[str, bytes]:
        item = await _call(next, self._it, None)
        if item is None:
            raise StopAsyncIteration
        return item

    async def write(self, data: bytes, timeout: Optional[float] = None) -> None:
        await _call(self._p.write, data, timeout)

    def close_stdin(self) -> None:
        self._p.close_stdin()

    async def kill(self, sig: int = 9) -> None:
        await _call(self._p.kill, sig)

    async def resize(self, rows: int, cols: int) -> None:
        await _call(self._p.resize, rows, cols)

    async def wait(self, timeout: Optional[float] = None) -> Result:
        return await _call(self._p.wait, timeout)

    async def close(self) -> None:
        await _call(self._p.close)


class Files:
    def __init__(self, f: _sync.Files) -> None:
        self._f = f

    async def write(self, path: str, data, mode: int = 0o644, timeout: Optional[float] = 60.0) -> None:
        await _call(self._f.write, path, data, mode, timeout)

    async def read(self, path: str, max_size: int = 1 << 30, timeout: Optional[float] = 60.0) -> bytes:
        return await _call(self._f.read, path, max_size, timeout)


class Console:
    def __init__(self, c: _sync.Console) -> None:
        self._c = c

    def text(self) -> str:
        return self._c.text()

    async def wait_for(self, pattern: str, timeout: Optional[float] = 10.0) -> str:
        return await _call(self._c.wait_for, pattern, timeout)


class Sandbox:
    """kiln.Sandbox for asyncio: ``async with kiln.aio.Sandbox(...) as sb``;
    ``await sb.run(...)``, ``await sb.exec(...)``; the options are
    kiln.Sandbox's."""

    def __init__(self, **options: Any) -> None:
        self._sb = _sync.Sandbox(**options)
        self.files = Files(self._sb.files)
        self.console = Console(self._sb.console)

    @property
    def sync(self) -> _sync.Sandbox:
        """The underlying kiln.Sandbox."""
        return self._sb

    async def start(self) -> "Sandbox":
        await _call(self._sb.start)
        return self

    async def close(self) -> None:
        await _call(self._sb.close)

    async def __aenter__(self) -> "Sandbox":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def run(self, argv, **kw: Any) -> Result:
        return await _call(self._sb.run, argv, **kw)

    async def exec(self, argv, **kw: Any) -> Process:
        return Process(await _call(self._sb.exec, argv, **kw))
