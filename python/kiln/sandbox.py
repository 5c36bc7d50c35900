# SPDX-License-Identifier: MIT
"""Sandboxes: a kiln microVM whose PID 1 is kiln's guest agent, driven
through libkiln's sandbox API (kiln.h).

Threads: libkiln wants one thread at a time per sandbox, and output only
moves while some thread waits. Here every call into the library holds the
sandbox's lock, and waits run in short slices, so many threads can run,
feed and read commands of one sandbox at once; whichever thread waits moves
every command's output into that command's own buffer.
"""
from __future__ import annotations

import atexit
import collections
import ctypes
import errno as _errno
import fcntl
import itertools
import os
import shlex
import shutil
import signal as _signal
import stat
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    IO,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _lib
from .errors import BootError, ClosedError, CommandError, KilnError, Timeout

Argv = Union[str, Sequence[Union[str, bytes]]]
Data = Union[bytes, bytearray, memoryview]

_SLICE_MS = 50  # longest a wait holds the sandbox's lock
_STDIN_PIPE_SIZE = 1 << 20
_MAX_FILE = 1 << 30  # what the agent moves at most (kiln.h)
_LOG_LEVELS = {
    "error": _lib.LOG_ERROR,
    "warn": _lib.LOG_WARN,
    "info": _lib.LOG_INFO,
    "debug": _lib.LOG_DEBUG,
}


@dataclass(frozen=True)
class Share:
    """A host directory shared with the sandbox (virtio-fs), mounted by the
    agent at ``guest_path`` (default ``/mnt/TAG``)."""

    host: str
    tag: str
    read_only: bool = False
    guest_path: Optional[str] = None


@dataclass(frozen=True)
class Disk:
    """A disk image (raw or qcow2, detected unless ``format`` says), the
    next ``/dev/vdX`` in the guest. ``snapshot``: the image is only read,
    the guest's writes go to a private overlay that ends with the VM."""

    path: str
    read_only: bool = False
    snapshot: bool = False
    format: Optional[str] = None


@dataclass
class Result:
    """How a command ended. ``exit_code`` is shell-style: the exit code,
    128+N when killed by signal N (``signal`` is then N), 124 after its
    timeout, 126 not executable, 127 not found."""

    argv: List[str]
    exit_code: int
    signal: int
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False
    message: str = ""  # the agent's word when the command could not start

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> "Result":
        """Raises CommandError unless the exit code is 0; returns self."""
        if self.exit_code != 0:
            raise CommandError(self)
        return self


@dataclass(frozen=True)
class HostCheck:
    """What this host can run: ``kvm`` is True when kiln's own vCPUs can
    boot a Linux guest at native speed; ``reason`` says why not;
    ``tcg`` is True when QEMU's emulator is there to fall back on."""

    kvm: bool
    reason: Optional[str]
    tcg: bool
    library: str = field(default="")


def host_check() -> HostCheck:
    """The library's diagnosis of this host (kiln_host_limitation)."""
    lib = _lib.load()
    why = lib.host_limitation()
    qemu = os.environ.get("KILN_QEMU") or shutil.which("qemu-system-x86_64")
    return HostCheck(
        kvm=why is None,
        reason=why.decode(errors="replace") if why else None,
        tcg=bool(qemu),
        library=lib.path,
    )


def _b(s: Union[str, bytes], what: str) -> bytes:
    """A C string argument: str or bytes, without NUL."""
    if isinstance(s, str):
        s = os.fsencode(s)
    elif not isinstance(s, bytes):
        raise TypeError(f"{what} must be str or bytes, not {type(s).__name__}")
    if b"\0" in s:
        raise ValueError(f"{what} contains a NUL byte")
    return s


def _ms(seconds: Optional[float], what: str) -> int:
    """Seconds -> the library's milliseconds (-1: forever)."""
    if seconds is None:
        return -1
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise TypeError(f"{what} must be a number of seconds")
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{what} must be >= 0")
    if seconds == float("inf"):
        return -1
    return min(int(seconds * 1000), 2**31 - 1)


def _argv(argv: Argv) -> List[bytes]:
    if isinstance(argv, (str, bytes)):
        return [b"/bin/sh", b"-c", _b(argv, "command")]
    if not isinstance(argv, (list, tuple)):
        raise TypeError("argv must be a str or a list of str/bytes")
    if not argv:
        raise ValueError("argv is empty")
    return [_b(a, "argument") for a in argv]


def _env(env: Optional[Mapping[str, str]]) -> List[bytes]:
    if env is None:
        return []
    if not isinstance(env, Mapping):
        raise TypeError("env must be a mapping of str to str")
    out = []
    for k, v in env.items():
        kb, vb = _b(k, "environment name"), _b(v, "environment value")
        if not kb or b"=" in kb:
            raise ValueError(f"bad environment name {k!r}")
        out.append(kb + b"=" + vb)
    return out


def _cstrings(items: List[bytes]):
    arr = (ctypes.c_char_p * (len(items) + 1))()
    for i, it in enumerate(items):
        arr[i] = it
    arr[len(items)] = None
    return arr


def _anon_file() -> int:
    """An unnamed read-write file (console log, file transfers)."""
    try:
        return os.memfd_create("kiln", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return os.open("/tmp", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)


def _state_root() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/") and os.path.isdir(xdg):
        return Path(xdg) / "kiln"
    return Path(f"/tmp/kiln-{os.getuid()}")


def _net_spec(net, allow, deny, publish, domains=(), dns=None) -> Optional[str]:
    """--net/--allow/--deny/-p/--allow-domain/--dns as the net device's
    option string."""
    if dns is not None and (not isinstance(dns, str) or not dns or any(c in dns for c in ",;\0")):
        raise ValueError(f"bad dns {dns!r}: IP[:PORT]")
    for seq, what in ((allow, "allow"), (deny, "deny"), (publish, "publish"), (domains, "allow_domains")):
        if isinstance(seq, (str, bytes)) or not all(isinstance(x, str) for x in seq):
            raise TypeError(f"{what} must be a list of str")
        for x in seq:
            if not x or ";" in x or "," in x or "\0" in x:
                raise ValueError(f"bad {what} entry {x!r}")
    if net is None or net == "none":
        if allow or deny or publish or domains or dns:
            raise ValueError("allow, deny, publish, allow_domains and dns need net='user'")
        return None
    if not isinstance(net, str) or not (net == "user" or net.startswith("user,")):
        raise ValueError("net must be None, 'none' or 'user[,egress=public|all|none]'")
    rules = [f"allow:{r}" for r in allow] + [f"deny:{r}" for r in deny]
    fwds = []
    for p in publish:
        proto = "tcp"
        if p.endswith("/udp") or p.endswith("/tcp"):
            p, proto = p[:-4], p[-3:]
        parts = p.split(":")
        if len(parts) == 2:
            parts.insert(0, "127.0.0.1")
        if len(parts) != 3:
            raise ValueError(f"publish entry {p!r}: [HOSTIP:]HOSTPORT:GUESTPORT[/udp]")
        fwds.append(f"{proto}:{':'.join(parts)}")
    spec = "net" + net[4:]
    if rules:
        spec += ",rules=" + ";".join(rules)
    if fwds:
        spec += ",forward=" + ";".join(fwds)
    if domains:
        spec += ",domains=" + ";".join(domains)
    if dns:
        spec += ",dns=" + dns
    return spec


_UNLIMITED = 2**64 - 1


def _ulimits(ulimits) -> List[Tuple[str, Tuple[int, int]]]:
    """{"nofile": 64, "nproc": (100, 200), "core": None} -> (name, (soft,
    hard)) with None meaning unlimited."""
    if ulimits is None:
        return []
    if not isinstance(ulimits, Mapping):
        raise TypeError("ulimits must be a mapping of name to limit")
    out = []
    for name, v in ulimits.items():
        if not isinstance(name, str):
            raise TypeError("ulimit names are str")
        soft, hard = v if isinstance(v, tuple) else (v, v)
        lim = []
        for x in (soft, hard):
            if x is None:
                lim.append(_UNLIMITED)
            elif isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _UNLIMITED:
                lim.append(x)
            else:
                raise ValueError(f"ulimit {name}: {x!r} is not a limit (an int >= 0, or None)")
        out.append((name, (lim[0], lim[1])))
    return out


class _Log:
    """Collects libkiln's messages: errors name what failed in exceptions;
    an optional callable sees every message."""

    def __init__(self, on_log) -> None:
        self.lock = threading.Lock()
        self.recent: Deque[Tuple[int, int, str]] = collections.deque(maxlen=64)
        self.seq = 0
        self.on_log = on_log
        self.fn = _lib.LOG_FN(self._cb)  # kept alive as long as we are

    def _cb(self, _opaque, level: int, msg: bytes) -> None:
        try:
            text = msg.decode(errors="replace") if msg else ""
            with self.lock:
                self.seq += 1
                self.recent.append((self.seq, level, text))
            if self.on_log is not None:
                self.on_log(level, text)
        except Exception:  # never into C
            pass

    def mark(self) -> int:
        with self.lock:
            return self.seq

    def errors_since(self, mark: int) -> str:
        with self.lock:
            msgs = [t for s, lv, t in self.recent if s > mark and lv <= _lib.LOG_WARN]
        return "; ".join(msgs[-3:])


def _raise(rc: int, what: str, log: Optional[_Log], mark: int) -> None:
    err = -rc
    detail = log.errors_since(mark) if log else ""
    msg = f"{what}: {detail}" if detail else what
    if err == _errno.ETIMEDOUT:
        raise Timeout(msg)
    raise KilnError(msg, err)


_live: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # interpreter exit: no VM outlives it
    for sb in list(_live):
        try:
            sb.close()
        except Exception:
            pass


class Console:
    """The sandbox's console (kernel and agent messages)."""

    def __init__(self, sb: "Sandbox") -> None:
        self._sb = sb

    def text(self) -> str:
        """Everything the console printed so far."""
        fd = self._sb._console_fd
        if fd < 0:
            raise ClosedError("console")
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0).decode(errors="replace")

    def wait_for(self, pattern: str, timeout: Optional[float] = 10.0) -> str:
        """Waits until ``pattern`` (plain text) appears in console output not
        consumed yet; returns the text up to and including it."""
        sb = self._sb
        pat = _b(pattern, "pattern")
        ms = _ms(timeout, "timeout")
        out = ctypes.c_void_p()
        mark = sb._log.mark()
        with sb._locked() as h:
            vm = sb._lib.sandbox_vm(h)
            if not vm:
                raise KilnError("an attached sandbox has no console here", _errno.ENOTSUP)
            with sb._console_cv:
                sb._console_users += 1
        try:
            rc = sb._lib.vm_console_wait_for(ctypes.c_void_p(vm), pat, ms, ctypes.byref(out))
        finally:
            with sb._console_cv:
                sb._console_users -= 1
                sb._console_cv.notify_all()
        if rc < 0:
            _raise(rc, f"console: waiting for {pattern!r}", sb._log, mark)
        try:
            return ctypes.string_at(out.value).decode(errors="replace") if out.value else ""
        finally:
            if out.value:
                _libc.free(out)


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


class Process:
    """A command running in a sandbox (``Sandbox.exec``). Iterating yields
    ``(stream, bytes)`` pairs, stream "stdout" or "stderr", as output
    arrives; ``wait()`` returns the Result, whose stdout/stderr hold what
    iteration did not take."""

    def __init__(
        self,
        sb: "Sandbox",
        argv: Argv,
        *,
        stdin: Union[bool, Data, None] = None,
        pty: bool = False,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        rows: int = 0,
        cols: int = 0,
    ) -> None:
        self._sb = sb
        self._lib = sb._lib
        self.argv = [os.fsdecode(a) for a in _argv(argv)]
        self._chunks: Deque[Tuple[str, bytes]] = collections.deque()
        self._status: Optional[Tuple[int, int, bool, str, float]] = None
        self._result: Optional[Result] = None
        self._h = ctypes.c_void_p()
        self._stdin_w = -1  # our end of the stdin pipe
        self._stdin_r = -1  # the library's end (or a file with the data)
        self._t0 = time.monotonic()
        if not isinstance(pty, bool):
            raise TypeError("pty must be a bool")
        for v, name in ((rows, "rows"), (cols, "cols")):
            if not isinstance(v, int) or not 0 <= v <= 65535:
                raise ValueError(f"{name} must be an int in 0..65535")

        args = _argv(argv)
        envs = _env({**sb._env, **(env or {})} if (env or sb._env) else None)
        o = _lib.ExecOpts()
        self._lib.exec_opts_init(ctypes.byref(o))
        self._keep = [_cstrings(args), _cstrings(envs)]
        o.argv = self._keep[0]
        o.env = self._keep[1] if envs else None
        if cwd is not None:
            self._keep.append(_b(cwd, "cwd"))
            o.cwd = self._keep[-1]
        o.pty = 1 if pty else 0
        o.rows, o.cols = rows, cols
        tmo = _ms(timeout, "timeout")  # -1: none (None or inf)
        o.timeout_ms = 0 if tmo < 0 else max(1, tmo)
        self._timeout = timeout
        # one callback per sandbox; opaque says whose output it is
        self._id = next(sb._ids)
        o.on_output = sb._out_fn
        o.opaque = self._id

        if stdin is True:
            # a pipe the waits forward from; write() never holds the lock
            # while the pipe is full
            self._stdin_r, self._stdin_w = os.pipe2(os.O_CLOEXEC)
            try:
                fcntl.fcntl(self._stdin_w, fcntl.F_SETPIPE_SZ, _STDIN_PIPE_SIZE)
            except OSError:
                pass
            os.set_blocking(self._stdin_w, False)
            o.stdin_fd = self._stdin_r
        elif stdin is not None and stdin is not False:
            if not isinstance(stdin, (bytes, bytearray, memoryview)):
                raise TypeError("stdin must be True, bytes or None")
            self._stdin_r = _anon_file()
            _write_all(self._stdin_r, bytes(stdin))
            os.lseek(self._stdin_r, 0, os.SEEK_SET)
            o.stdin_fd = self._stdin_r

        with sb._locked() as h:
            mark = sb._log.mark()
            rc = self._lib.sandbox_exec(h, ctypes.byref(o), ctypes.byref(self._h))
            if rc < 0:
                self._close_fds()
                _raise(rc, f"exec {self.argv!r}", sb._log, mark)
            sb._procs[self._id] = self


    def _close_fds(self) -> None:
        for fd in (self._stdin_w, self._stdin_r):
            if fd >= 0:
                os.close(fd)
        self._stdin_w = self._stdin_r = -1

    def _finish(self, res: _lib.ExecResult) -> None:
        """The exec ended; its output stays queued for iteration until
        wait() (or the end of iteration) takes it."""
        self._status = (
            res.status,
            res.signo,
            bool(res.timed_out),
            res.message.decode(errors="replace"),
            time.monotonic() - self._t0,
        )
        self._release()

    def _make_result(self) -> Result:
        if self._result is None:
            status, signo, timed_out, message, duration = self._status
            chunks = list(self._chunks)
            self._chunks.clear()
            self._result = Result(
                argv=self.argv,
                exit_code=status,
                signal=signo,
                stdout=b"".join(c for s, c in chunks if s == "stdout"),
                stderr=b"".join(c for s, c in chunks if s == "stderr"),
                duration=duration,
                timed_out=timed_out,
                message=message,
            )
        return self._result

    def _release(self) -> None:
        """Frees the library's exec (kills it if it still runs); lock held."""
        if self._h.value:
            self._lib.exec_free(self._h)
            self._h = ctypes.c_void_p()
        self._close_fds()
        self._sb._procs.pop(self._id, None)

    def _pump(self, slice_ms: int) -> None:
        """One wait slice on this exec; every exec's output moves."""
        sb = self._sb
        with sb._locked():
            if self._status is not None:
                return
            if not self._h.value:
                raise ClosedError("process")
            res = _lib.ExecResult()
            mark = sb._log.mark()
            rc = self._lib.exec_wait(self._h, slice_ms, ctypes.byref(res))
            if rc == 0:
                self._finish(res)
            elif rc != -_errno.ETIMEDOUT:
                self._release()
                _raise(rc, f"waiting for {self.argv!r}", sb._log, mark)

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once it ended, else None (does not wait)."""
        return self._status[0] if self._status else None

    def poll(self) -> Optional[int]:
        """Moves output without blocking; the exit code once it ended."""
        if self._status is None:
            self._pump(0)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Result:
        """Waits for the command to end (at most ``timeout`` seconds, then
        Timeout: it keeps running). The Result holds the output iteration
        has not taken."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        _ms(timeout, "timeout")
        while self._status is None:
            left = _SLICE_MS
            if deadline is not None:
                rem = deadline - time.monotonic()
                if rem <= 0:
                    raise Timeout(f"{self.argv!r} still runs after {timeout} s")
                left = max(1, min(_SLICE_MS, int(rem * 1000)))
            self._pump(left)
        return self._make_result()

    def __iter__(self) -> Iterator[Tuple[str, bytes]]:
        while True:
            if self._chunks:
                yield self._chunks.popleft()
                continue
            if self._status is not None:
                return
            self._pump(_SLICE_MS)

    def write(self, data: Data, timeout: Optional[float] = None) -> None:
        """Feeds the command's stdin (exec(..., stdin=True)); blocks while
        the guest does not read, at most ``timeout`` seconds."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes")
        if self._stdin_w < 0:
            raise KilnError("stdin is not open (exec with stdin=True)", _errno.EBADF)
        view = memoryview(data).cast("B")
        deadline = None if timeout is None else time.monotonic() + timeout
        while view:
            if self._status is not None:
                raise KilnError(f"{self.argv!r} ended", _errno.EPIPE)
            try:
                n = os.write(self._stdin_w, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout("stdin: the command does not read")
            self._pump(5)  # the pipe is full: let a wait forward it

    def close_stdin(self) -> None:
        """End of input: the command reads EOF after what was written."""
        if self._stdin_w >= 0:
            os.close(self._stdin_w)
            self._stdin_w = -1

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        """Sends ``sig`` to the command's process group."""
        if not isinstance(sig, int) or not 1 <= int(sig) <= 64:
            raise ValueError("signal must be 1..64")
        with self._sb._locked():
            if self._status is not None:
                return
            if not self._h.value:
                raise ClosedError("process")
            rc = self._lib.exec_kill(self._h, int(sig))
            if rc < 0 and rc != -_errno.EPIPE:
                _raise(rc, "kill", self._sb._log, 0)

    def resize(self, rows: int, cols: int) -> None:
        """Resizes the command's pty (ignored without one)."""
        for v, name in ((rows, "rows"), (cols, "cols")):
            if not isinstance(v, int) or not 1 <= v <= 65535:
                raise ValueError(f"{name} must be an int in 1..65535")
        with self._sb._locked():
            if self._status is None and self._h.value:
                self._lib.exec_resize(self._h, rows, cols)

    def close(self) -> None:
        """Kills the command if it still runs and frees it."""
        try:
            with self._sb._locked():
                self._release()
        except ClosedError:
            self._close_fds()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Files:
    """Moves files in and out of the sandbox through its agent."""

    def __init__(self, sb: "Sandbox") -> None:
        self._sb = sb

    def write(
        self,
        path: str,
        data: Union[Data, IO[bytes]],
        mode: int = 0o644,
        timeout: Optional[float] = 60.0,
    ) -> None:
        """Writes ``data`` (bytes, or a binary file object read from its
        current position to its end) to the guest's absolute ``path``, made
        atomically with ``mode``."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            fd = _anon_file()
            try:
                _write_all(fd, bytes(data))
                os.lseek(fd, 0, os.SEEK_SET)
                self._put(path, mode, fd, len(data), timeout)
            finally:
                os.close(fd)
        elif hasattr(data, "read"):
            self.write_stream(path, data, mode=mode, timeout=timeout)
        else:
            raise TypeError("data must be bytes or a binary file object")

    def write_stream(
        self,
        path: str,
        src: IO[bytes],
        mode: int = 0o644,
        timeout: Optional[float] = 600.0,
    ) -> None:
        """Streams a file object to the guest: a regular file's fd directly,
        anything else through an unnamed temporary file."""
        try:
            fd = src.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            fd, st = -1, None
        if st is not None and stat.S_ISREG(st.st_mode):
            pos = os.lseek(fd, 0, os.SEEK_CUR)
            self._put(path, mode, fd, max(0, st.st_size - pos), timeout)
            return
        tmp = _anon_file()
        try:
            size = 0
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                if not isinstance(chunk, (bytes, bytearray)):
                    raise TypeError("the file object must be binary")
                _write_all(tmp, bytes(chunk))
                size += len(chunk)
            os.lseek(tmp, 0, os.SEEK_SET)
            self._put(path, mode, tmp, size, timeout)
        finally:
            os.close(tmp)

    def _put(self, path, mode, fd, size, timeout) -> None:
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise ValueError("mode must be 0..0o7777")
        if size > _MAX_FILE:
            raise KilnError(f"{path}: larger than 1 GiB", _errno.EFBIG)
        sb = self._sb
        p = _b(path, "path")
        with sb._locked() as h:
            mark = sb._log.mark()
            rc = sb._lib.sandbox_put_file(h, p, mode, fd, size, _ms(timeout, "timeout"))
            if rc < 0:
                _raise(rc, f"writing {path}", sb._log, mark)

    def read(self, path: str, max_size: int = _MAX_FILE, timeout: Optional[float] = 60.0) -> bytes:
        """The guest's regular file ``path`` (absolute)."""
        fd = _anon_file()
        try:
            size = self._get(path, max_size, fd, timeout)
            return os.pread(fd, size, 0) if size else b""
        finally:
            os.close(fd)

    def read_stream(
        self,
        path: str,
        dst: IO[bytes],
        max_size: int = _MAX_FILE,
        timeout: Optional[float] = 600.0,
    ) -> int:
        """Copies the guest's file into a binary file object; returns its
        size. A file object with an fd gets the bytes written there."""
        try:
            fd = dst.fileno()
            dst.flush()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if fd >= 0:
            return self._get(path, max_size, fd, timeout)
        tmp = _anon_file()
        try:
            size = self._get(path, max_size, tmp, timeout)
            off = 0
            while off < size:
                chunk = os.pread(tmp, min(1 << 20, size - off), off)
                dst.write(chunk)
                off += len(chunk)
            return size
        finally:
            os.close(tmp)

    def _get(self, path, max_size, fd, timeout) -> int:
        if not isinstance(max_size, int) or max_size < 0:
            raise ValueError("max_size must be a non-negative int")
        sb = self._sb
        p = _b(path, "path")
        size = ctypes.c_uint64()
        with sb._locked() as h:
            mark = sb._log.mark()
            rc = sb._lib.sandbox_get_file(
                h, p, min(max_size, 2**64 - 1), fd, _ms(timeout, "timeout"), ctypes.byref(size)
            )
            if rc < 0:
                _raise(rc, f"reading {path}", sb._log, mark)
        return size.value


class Sandbox:
    """A microVM running kiln's guest agent. Boots on ``start()`` or on
    entering a ``with`` block, and stops on ``close()``, on leaving the
    block (exceptions included) and at interpreter exit."""

    def __init__(
        self,
        *,
        cpus: int = 1,
        memory_mib: int = 256,
        shares: Sequence[Share] = (),
        disks: Sequence[Union[Disk, str]] = (),
        devices: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        accel: str = "auto",
        net: Optional[str] = None,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        publish: Sequence[str] = (),
        allow_domains: Sequence[str] = (),
        dns: Optional[str] = None,
        networks: Sequence[str] = (),
        hostname: Optional[str] = None,
        ulimits: Optional[Mapping[str, Union[int, None, Tuple[Optional[int], Optional[int]]]]] = None,
        kernel: Optional[str] = None,
        initrd: Optional[str] = None,
        cmdline: Optional[str] = None,
        boot_timeout: float = 30.0,
        log_level: str = "warn",
        on_log=None,
    ) -> None:
        self._lib = _lib.load()
        self._h = ctypes.c_void_p()
        self._lock = threading.RLock()
        self._closed = False
        self._attached = False
        self._console_fd = -1
        # live execs by id, held strongly: the library hands their output
        # to _on_output until they are freed, whether or not the caller kept
        # them
        self._procs: "dict[int, Process]" = {}
        self._ids = itertools.count(1)
        self._out_fn = _lib.OUTPUT_FN(self._on_output)
        # console waits in flight (they run without the lock); destroy waits
        # for them to return
        self._console_users = 0
        self._console_cv = threading.Condition()
        self.name: Optional[str] = None
        if not isinstance(cpus, int) or isinstance(cpus, bool):
            raise TypeError("cpus must be an int")
        if not isinstance(memory_mib, int) or isinstance(memory_mib, bool):
            raise TypeError("memory_mib must be an int")
        if not 0 < cpus < 2**31:
            raise ValueError("cpus must be a positive int")
        if not 0 < memory_mib < 2**63:
            raise ValueError("memory_mib must be a positive int")
        if accel not in _lib.ACCEL:
            raise ValueError(f"accel must be one of {sorted(_lib.ACCEL)}")
        if log_level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(_LOG_LEVELS)}")
        for s in shares:
            if not isinstance(s, Share):
                raise TypeError("shares must be kiln.Share objects")
        net_spec = _net_spec(net, allow, deny, publish, allow_domains, dns)
        if isinstance(networks, (str, bytes)):
            raise TypeError("networks must be a sequence of network names")
        self._networks = [str(n) for n in networks]
        if hostname is not None and not isinstance(hostname, str):
            raise TypeError("hostname must be a str")
        self._hostname = hostname
        self._ulimits = _ulimits(ulimits)
        self._opts = dict(
            cpus=cpus,
            memory_mib=memory_mib,
            shares=list(shares),
            disks=[d if isinstance(d, Disk) else Disk(str(d)) for d in disks],
            devices=[str(d) for d in devices] + ([net_spec] if net_spec else []),
            accel=accel,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
        )
        self._boot_timeout = boot_timeout
        _ms(boot_timeout, "boot_timeout")
        self._env = dict(env or {})
        _env(self._env)
        self._level = _LOG_LEVELS[log_level]
        self._log = _Log(on_log)
        self.files = Files(self)
        self.console = Console(self)

    # ---- life cycle ----

    def start(self) -> "Sandbox":
        """Boots the VM and waits for its agent (BootError if it does not
        come up within boot_timeout)."""
        with self._lock:
            if self._closed:
                raise ClosedError("sandbox")
            if self._h.value:
                return self
            self._boot()
            _live.add(self)
        return self

    def _boot(self) -> None:
        lib, log = self._lib, self._log
        mark = log.mark()
        cfg = self._config(mark)
        try:
            rc = lib.sandbox_create(cfg, ctypes.byref(self._h))
            if rc < 0:
                _raise(rc, "starting the sandbox", log, mark)
        except BaseException:
            self._teardown()
            raise
        finally:
            lib.config_free(cfg)
        rc = lib.sandbox_wait_ready(self._h, _ms(self._boot_timeout, "boot_timeout"))
        if rc < 0:
            tail = self.console.text()
            what = log.errors_since(mark)
            self._teardown()
            msg = (
                f"the sandbox's agent did not come up within {self._boot_timeout} s"
                if rc == -_errno.ETIMEDOUT
                else "the sandbox ended before its agent came up"
            )
            raise BootError(msg + (f": {what}" if what else ""), -rc, tail)

    def _config(self, mark: int) -> int:
        """A kiln_config of this sandbox's options (the caller frees it);
        its console goes to a new anonymous file of this object's."""
        lib, o, log = self._lib, self._opts, self._log
        cfg = lib.config_new()
        if not cfg:
            raise KilnError("out of memory", _errno.ENOMEM)

        def check(rc: int, what: str) -> None:
            if rc < 0:
                _raise(rc, what, log, mark)

        try:
            lib.config_set_log(cfg, log.fn, None, self._level)
            gdir = os.environ.get("KILN_GUEST_DIR") or lib.guest_dir()
            if not (o["kernel"] and o["initrd"]):
                check(
                    lib.config_set_guest_dir(cfg, _b(gdir, "guest dir") if gdir else None),
                    "kiln's default guest was not found ($KILN_GUEST_DIR, the "
                    "build tree, the installed data directory)",
                )
            if o["kernel"]:
                check(lib.config_set_kernel(cfg, _b(o["kernel"], "kernel")), "kernel")
            if o["initrd"]:
                check(lib.config_set_initrd(cfg, _b(o["initrd"], "initrd")), "initrd")
            check(lib.config_set_cpus(cfg, o["cpus"]), f"cpus={o['cpus']}")
            check(lib.config_set_memory_mib(cfg, o["memory_mib"]), f"memory_mib={o['memory_mib']}")
            for s in o["shares"]:
                check(
                    lib.config_add_share_at(
                        cfg,
                        _b(s.host, "share host"),
                        _b(s.tag, "share tag"),
                        1 if s.read_only else 0,
                        _b(s.guest_path, "share guest_path") if s.guest_path else None,
                    ),
                    f"share {s.host}:{s.tag}",
                )
            for d in o["disks"]:
                flags = (1 if d.read_only else 0) | (2 if d.snapshot else 0)
                fmt = _b(d.format, "disk format") if d.format else None
                check(lib.config_add_disk_with(cfg, _b(d.path, "disk"), flags, fmt), f"disk {d.path}")
            for spec in o["devices"]:
                check(lib.config_add_device(cfg, _b(spec, "device")), f"device {spec}")
            if o["cmdline"]:
                check(lib.config_append_cmdline(cfg, _b(o["cmdline"], "cmdline")), "cmdline")
            check(lib.config_set_accel(cfg, _lib.ACCEL[o["accel"]]), "accel")
            for name, (soft, hard) in self._ulimits:
                check(lib.config_set_ulimit(cfg, name.encode(), soft, hard), f"ulimit {name}")
            if self._hostname is not None:
                check(lib.config_set_hostname(cfg, _b(self._hostname, "hostname")), f"hostname {self._hostname!r}")
            for n in self._networks:
                check(lib.config_add_network(cfg, _b(n, "network")), f"network {n!r}")
            if self._console_fd < 0:
                self._console_fd = _anon_file()
            check(lib.config_set_console_fds(cfg, -1, self._console_fd), "console")
            check(lib.config_set_console_capture(cfg, 1), "console capture")
        except BaseException:
            lib.config_free(cfg)
            raise
        return cfg

    def snapshot(self, directory: str) -> None:
        """Writes a template of this running sandbox to ``directory``
        (kiln's KVM engine only): its agent's connection is closed first, so
        commands running now end; the sandbox then goes on. Clones:
        ``Sandbox.restore(directory)``, ``Pool(from_snapshot=directory)``."""
        mark = self._log.mark()
        with self._locked() as h:
            for p in list(self._procs.values()):
                p._release()
            rc = self._lib.sandbox_snapshot(h, _b(str(directory), "directory"))
        if rc < 0:
            _raise(rc, f"snapshot to {directory}", self._log, mark)

    @classmethod
    def restore(
        cls,
        directory: str,
        *,
        hostname: Optional[str] = None,
        boot_timeout: float = 30.0,
        log_level: str = "warn",
        on_log=None,
    ) -> "Sandbox":
        """A new clone of the template in ``directory`` (``snapshot()``),
        started: its agent got the host's clock, fresh entropy and a new id
        (and ``hostname``) before this returns. KVM engine only."""
        sb = cls(hostname=hostname, boot_timeout=boot_timeout, log_level=log_level, on_log=on_log)
        lib, log = sb._lib, sb._log
        mark = log.mark()
        cfg = lib.config_new()
        if not cfg:
            raise KilnError("out of memory", _errno.ENOMEM)
        try:
            lib.config_set_log(cfg, log.fn, None, sb._level)
            if hostname is not None:
                rc = lib.config_set_hostname(cfg, _b(hostname, "hostname"))
                if rc < 0:
                    _raise(rc, f"hostname {hostname!r}", log, mark)
            sb._console_fd = _anon_file()
            lib.config_set_console_fds(cfg, -1, sb._console_fd)
            lib.config_set_console_capture(cfg, 1)
            rc = lib.sandbox_restore(
                cfg, _b(str(directory), "directory"), _ms(boot_timeout, "boot_timeout"), ctypes.byref(sb._h)
            )
            if rc < 0:
                _raise(rc, f"restoring {directory}", log, mark)
        except BaseException:
            sb._teardown()
            sb._closed = True
            raise
        finally:
            lib.config_free(cfg)
        _live.add(sb)
        return sb

    @classmethod
    def attach(cls, name: str, timeout: float = 10.0, log_level: str = "warn") -> "Sandbox":
        """Connects to a sandbox that ``kiln start NAME`` runs (or to an
        agent's vsock socket, given as a path). Closing detaches; the VM
        keeps running (``stop()`` asks it to shut down)."""
        path = name if "/" in name else str(_state_root() / name / "vsock")
        if "/" not in name and not os.path.exists(path):
            raise KilnError(f"no sandbox named {name!r} ({path} is missing)", _errno.ENOENT)
        sb = cls(log_level=log_level)
        sb.name = name
        sb._attached = True
        mark = sb._log.mark()
        rc = sb._lib.sandbox_attach(
            _b(path, "path"), sb._log.fn, None, sb._level, _ms(timeout, "timeout"), ctypes.byref(sb._h)
        )
        if rc < 0:
            _raise(rc, f"attaching to {name}", sb._log, mark)
        _live.add(sb)
        return sb

    def _teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if self._h.value and pool is not None:
            # a pool's member goes back to be destroyed (never reused);
            # once the pool is closed it is destroyed here
            with pool._lock:
                if pool._h.value:
                    self._lib.pool_release(pool._h, self._h)
                    self._h = ctypes.c_void_p()
        if self._h.value:
            vm = self._lib.sandbox_vm(self._h)
            with self._console_cv:
                if self._console_users and vm:
                    # ends the VM, so that console waits return (-EPIPE)
                    self._lib.vm_stop(ctypes.c_void_p(vm))
                while self._console_users:
                    self._console_cv.wait()
            self._lib.sandbox_destroy(self._h)
            self._h = ctypes.c_void_p()
        if self._console_fd >= 0:
            os.close(self._console_fd)
            self._console_fd = -1

    def _end(self, grace_ms: Optional[int]) -> int:
        """Frees every exec, asks the agent to shut down (unless grace_ms is
        None: detach only), then frees the sandbox. Lock held. Returns the
        outcome (KILN_OUTCOME_NONE when not asked)."""
        info = _lib.ExitInfo()
        for p in list(self._procs.values()):
            p._release()
        if getattr(self, "_pool", None) is not None:
            grace_ms = None  # released, not stopped: the pool destroys it
        if grace_ms is not None:
            self._lib.sandbox_stop(self._h, grace_ms, ctypes.byref(info))
        self._closed = True
        self._teardown()
        _live.discard(self)
        return info.outcome

    def stop(self, grace: float = 5.0) -> str:
        """Clean shutdown (the agent signals every process, syncs and
        reboots; killed after ``grace`` seconds); returns how the VM ended.
        Then closes. An attached sandbox only sends the request."""
        with self._lock:
            if self._closed or not self._h.value:
                self._closed = True
                return "none"
            outcome = self._end(_ms(grace, "grace"))
            names = _lib.OUTCOME_NAMES
            return names[outcome] if 0 <= outcome < len(names) else "unknown"

    def close(self) -> None:
        """Stops a sandbox this object started (a short clean shutdown) or
        detaches from an attached one. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if self._attached:
                self._end(None)
                return
        self.stop(grace=2.0)

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and self._h.value:
                self.close()
        except Exception:
            pass

    class _Held:
        def __init__(self, sb: "Sandbox") -> None:
            self.sb = sb

        def __enter__(self) -> ctypes.c_void_p:
            sb = self.sb
            sb._lock.acquire()
            if sb._closed or not sb._h.value:
                sb._lock.release()
                raise ClosedError("sandbox")
            return sb._h

        def __exit__(self, *exc) -> None:
            self.sb._lock.release()

    # output arrives on whichever thread waits, with the lock held
    def _on_output(self, opaque, stream: int, data, length: int) -> None:
        try:
            p = self._procs.get(opaque or 0)
            if p is not None:
                p._chunks.append(
                    ("stderr" if stream == 2 else "stdout", ctypes.string_at(data, length))
                )
        except Exception:  # never into C
            pass

    def _locked(self) -> "_Held":
        return Sandbox._Held(self)

    def _vm(self) -> ctypes.c_void_p:
        with self._locked() as h:
            vm = self._lib.sandbox_vm(h)
        if not vm:
            raise KilnError("an attached sandbox has no console here", _errno.ENOTSUP)
        return ctypes.c_void_p(vm)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def accel(self) -> str:
        """The engine that runs the guest: "kvm" or "tcg"."""
        vm = self._vm()
        return _lib.ACCEL_NAMES.get(self._lib.vm_accel(vm), "unknown")

    def net_stats(self) -> Dict[str, int]:
        """The network card's counters: tx_frames, tx_denied (refused by
        the egress policy), tx_errors, rx_frames, rx_dropped. KilnError
        (ENOENT) without a network."""
        vm = self._vm()
        st = _lib.NetStats()
        rc = self._lib.vm_net_stats(vm, ctypes.byref(st))
        if rc < 0:
            raise KilnError("this sandbox has no network (net='user')", -rc)
        return {
            k: getattr(st, k) for k in ("tx_frames", "tx_denied", "tx_errors", "tx_dropped", "rx_frames", "rx_dropped")
        }

    @property
    def vsock_path(self) -> str:
        """The hybrid vsock socket its agent is reached through."""
        with self._locked() as h:
            return os.fsdecode(self._lib.sandbox_vsock_path(h) or b"")

    # ---- commands ----

    def exec(
        self,
        argv: Argv,
        *,
        stdin: Union[bool, Data, None] = None,
        pty: bool = False,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        rows: int = 0,
        cols: int = 0,
    ) -> Process:
        """Starts a command; returns its Process. A str runs under
        ``/bin/sh -c``. stdin=True: feed it with ``write()``."""
        return Process(
            self, argv, stdin=stdin, pty=pty, env=env, cwd=cwd, timeout=timeout, rows=rows, cols=cols
        )

    def run(
        self,
        argv: Argv,
        *,
        stdin: Optional[Data] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        check: bool = False,
        pty: bool = False,
    ) -> Result:
        """Runs a command to its end, like subprocess.run with captured
        output. ``timeout``: the command is killed and Timeout raised (its
        ``result`` has the output so far); ``check``: CommandError unless it
        exits 0."""
        if stdin is True:
            raise TypeError("run() takes stdin as bytes; use exec() to stream")
        p = self.exec(argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout, pty=pty)
        try:
            res = p.wait()
        finally:
            p.close()
        if res.timed_out:
            raise Timeout(f"{res.argv!r} timed out after {timeout} s", res)
        if check:
            res.check()
        return res


_live_pools: "weakref.WeakSet[Pool]" = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:  # interpreter exit: no pool outlives it
    for p in list(_live_pools):
        try:
            p.close()
        except Exception:
            pass


class Pool:
    """Sandboxes booted (or, with ``from_snapshot``, restored from a
    template) ahead of demand. ``acquire()`` hands one out without a boot;
    closing it gives it back to be destroyed (a member is never reused)
    while the pool makes another. Refill failures are counted and, while
    they last, ``acquire`` raises the last one instead of waiting. The
    other keyword arguments are ``Sandbox``'s. Members have no console
    capture of their own."""

    def __init__(
        self,
        size: int = 2,
        *,
        parallel: int = 1,
        idle_lifetime: Optional[float] = None,
        empty: str = "wait",
        from_snapshot: Optional[str] = None,
        **sandbox_options,
    ) -> None:
        if empty not in _lib.POOL_EMPTY:
            raise ValueError(f"empty must be one of {sorted(_lib.POOL_EMPTY)}")
        # the members' options, validated as a Sandbox's; never started
        self._template = Sandbox(**sandbox_options)
        self._lib = self._template._lib
        self._h = ctypes.c_void_p()
        self._lock = threading.Lock()
        log = self._template._log
        mark = log.mark()
        opts = _lib.PoolOpts()
        self._lib.pool_opts_init(ctypes.byref(opts))
        opts.target = int(size)
        opts.fill_parallel = int(parallel)
        opts.idle_lifetime_ms = _ms(idle_lifetime, "idle_lifetime") if idle_lifetime else 0
        opts.boot_timeout_ms = _ms(self._template._boot_timeout, "boot_timeout")
        opts.empty = _lib.POOL_EMPTY[empty]
        self._from = _b(str(from_snapshot), "from_snapshot") if from_snapshot else None
        opts.from_snapshot = self._from
        cfg = self._template._config(mark) if not from_snapshot else self._snapshot_config(mark)
        try:
            rc = self._lib.pool_create(cfg, ctypes.byref(opts), ctypes.byref(self._h))
        finally:
            self._lib.config_free(cfg)
        if rc < 0:
            _raise(rc, "creating the pool", log, mark)
        _live_pools.add(self)

    def _snapshot_config(self, mark: int) -> int:
        """A config for clones: log, console and hostname only (the
        template decides the rest)."""
        t, lib = self._template, self._template._lib
        cfg = lib.config_new()
        if not cfg:
            raise KilnError("out of memory", _errno.ENOMEM)
        lib.config_set_log(cfg, t._log.fn, None, t._level)
        if t._hostname is not None:
            lib.config_set_hostname(cfg, _b(t._hostname, "hostname"))
        t._console_fd = _anon_file()
        lib.config_set_console_fds(cfg, -1, t._console_fd)
        return cfg

    def acquire(self, timeout: Optional[float] = None) -> Sandbox:
        """A ready member, the caller's until closed (waiting at most
        ``timeout`` seconds, None: forever, when the pool is empty).
        Timeout, or KilnError with the refills' last error."""
        t = self._template
        with self._lock:
            if not self._h.value:
                raise ClosedError("pool")
            h = self._h
        sb = Sandbox(log_level="warn")
        sb._log, sb._level, sb._env = t._log, t._level, dict(t._env)
        sb._pool = self
        mark = t._log.mark()
        rc = self._lib.pool_acquire(h, -1 if timeout is None else _ms(timeout, "timeout"), ctypes.byref(sb._h))
        if rc < 0:
            sb._closed = True
            _raise(rc, "acquiring a pool member", t._log, mark)
        _live.add(sb)
        return sb

    def stats(self) -> Dict[str, Union[int, str]]:
        """target, ready, filling, in_use, releasing, acquired, booted,
        failures, failing, last_error (errno, 0: none), last_message."""
        with self._lock:
            if not self._h.value:
                raise ClosedError("pool")
            st = _lib.PoolStats()
            self._lib.pool_stats(self._h, ctypes.byref(st))
        out: Dict[str, Union[int, str]] = {
            f: getattr(st, f)
            for f in ("target", "ready", "filling", "in_use", "releasing", "acquired", "booted", "failures", "failing")
        }
        out["last_error"] = -st.last_error
        out["last_message"] = st.last_message.decode(errors="replace")
        return out

    def close(self) -> None:
        """Destroys the pool and its ready members (waiters get an error);
        members acquired stay usable until closed. Idempotent."""
        with self._lock:
            h, self._h = self._h, ctypes.c_void_p()
        if h.value:
            self._lib.pool_destroy(h)
            _live_pools.discard(self)
        t = self._template
        if t._console_fd >= 0:
            os.close(t._console_fd)
            t._console_fd = -1

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


@dataclass(frozen=True)
class Network:
    """A cluster network (``kiln network ls``)."""

    name: str
    subnet: str
    running: bool
    members: int


def network_create(name: str, subnet: Optional[str] = None) -> None:
    """Creates cluster network ``name`` (``subnet`` "A.B.C.D/N", default
    the first free 10.89.N.0/24) and starts its switch process; sandboxes
    join with ``Sandbox(networks=[name], hostname=...)``."""
    lib = _lib.load()
    log = _Log(None)
    mark = log.mark()
    rc = lib.network_create(_b(name, "network"), _b(subnet, "subnet") if subnet else None, log.fn, None)
    if rc < 0:
        _raise(rc, f"creating network {name!r}", log, mark)


def network_remove(name: str, force: bool = False) -> None:
    """Stops network ``name``'s switch and removes it; refused (EBUSY)
    while it has members unless ``force``."""
    lib = _lib.load()
    log = _Log(None)
    mark = log.mark()
    rc = lib.network_remove(_b(name, "network"), 1 if force else 0, log.fn, None)
    if rc < 0:
        _raise(rc, f"removing network {name!r}", log, mark)


def networks() -> List[Network]:
    """This user's cluster networks."""
    lib = _lib.load()
    arr = ctypes.POINTER(_lib.NetworkInfo)()
    n = ctypes.c_size_t()
    rc = lib.network_list(ctypes.byref(arr), ctypes.byref(n))
    if rc < 0:
        raise KilnError("listing networks", -rc)
    try:
        return [
            Network(arr[i].name.decode(), arr[i].subnet.decode(), bool(arr[i].running), arr[i].members)
            for i in range(n.value)
        ]
    finally:
        _libc.free(ctypes.cast(arr, ctypes.c_void_p))


def quote(argv: Sequence[str]) -> str:
    """A shell command line for argv (for ``run(str)``)."""
    return " ".join(shlex.quote(a) for a in argv)
