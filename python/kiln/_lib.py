# SPDX-License-Identifier: MIT
"""ctypes bindings for libkiln.so: the library, its prototypes and structs.

Only this module touches ctypes. The library is found through
``$KILN_LIBRARY``, then the build tree this package sits in
(``python/kiln`` -> ``build/libkiln.so.0``), then the library installed
beside the package (``PREFIX/lib``), then the system loader.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import LibraryNotFound

SONAME = "libkiln.so.0"

# enum kiln_log_level
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3
# enum kiln_accel
ACCEL = {"auto": 0, "kvm": 1, "tcg": 2}
ACCEL_NAMES = {v: k for k, v in ACCEL.items()}
OUTCOME_NAMES = [
    "none",
    "reset",
    "halt",
    "triple-fault",
    "internal-error",
    "debug-exit",
    "timeout",
    "stopped",
    "vmm-error",
]

EXEC_MESSAGE_MAX = 512

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
OUTPUT_FN = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
)


class ExecOpts(ctypes.Structure):
    """struct kiln_exec_opts (kiln.h); filled by kiln_exec_opts_init."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("argv", ctypes.POINTER(ctypes.c_char_p)),
        ("env", ctypes.POINTER(ctypes.c_char_p)),
        ("cwd", ctypes.c_char_p),
        ("uid", ctypes.c_long),
        ("gid", ctypes.c_long),
        ("pty", ctypes.c_int),
        ("rows", ctypes.c_uint),
        ("cols", ctypes.c_uint),
        ("timeout_ms", ctypes.c_uint),
        ("stdin_fd", ctypes.c_int),
        ("stdin_pipe", ctypes.c_int),
        ("on_output", OUTPUT_FN),
        ("opaque", ctypes.c_void_p),
        ("stdout_fd", ctypes.c_int),
        ("stderr_fd", ctypes.c_int),
    ]


class ExecResult(ctypes.Structure):
    """struct kiln_exec_result (kiln.h)."""

    _fields_ = [
        ("status", ctypes.c_int),
        ("started", ctypes.c_int),
        ("exited", ctypes.c_int),
        ("code", ctypes.c_int),
        ("signo", ctypes.c_int),
        ("timed_out", ctypes.c_int),
        ("error", ctypes.c_int),
        ("error_what", ctypes.c_int),
        ("message", ctypes.c_char * (EXEC_MESSAGE_MAX + 1)),
        ("reserved", ctypes.c_uint64 * 4),
    ]


class ExitInfo(ctypes.Structure):
    """struct kiln_exit_info (kiln.h)."""

    _fields_ = [
        ("outcome", ctypes.c_int),
        ("debug_exit_code", ctypes.c_int),
        ("internal_suberror", ctypes.c_uint32),
        ("rip", ctypes.c_uint64),
        ("detail", ctypes.c_char_p),
        ("reserved", ctypes.c_uint64 * 4),
    ]


class NetStats(ctypes.Structure):
    """struct kiln_net_stats (kiln.h)."""

    _fields_ = [
        ("tx_frames", ctypes.c_uint64),
        ("tx_denied", ctypes.c_uint64),
        ("tx_errors", ctypes.c_uint64),
        ("rx_frames", ctypes.c_uint64),
        ("rx_dropped", ctypes.c_uint64),
        ("tx_dropped", ctypes.c_uint64),
        ("reserved", ctypes.c_uint64 * 3),
    ]


class NetworkInfo(ctypes.Structure):
    """struct kiln_network_info (kiln.h)."""

    _fields_ = [
        ("name", ctypes.c_char * 64),
        ("subnet", ctypes.c_char * 20),
        ("running", ctypes.c_int),
        ("members", ctypes.c_uint),
        ("reserved", ctypes.c_uint64 * 4),
    ]


class PoolOpts(ctypes.Structure):
    """struct kiln_pool_opts (kiln.h); filled by kiln_pool_opts_init."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("target", ctypes.c_uint),
        ("fill_parallel", ctypes.c_uint),
        ("idle_lifetime_ms", ctypes.c_uint),
        ("boot_timeout_ms", ctypes.c_int),
        ("empty", ctypes.c_int),
        ("from_snapshot", ctypes.c_char_p),
    ]


class PoolStats(ctypes.Structure):
    """struct kiln_pool_stats (kiln.h)."""

    _fields_ = [
        ("target", ctypes.c_uint),
        ("ready", ctypes.c_uint),
        ("filling", ctypes.c_uint),
        ("in_use", ctypes.c_uint),
        ("releasing", ctypes.c_uint),
        ("acquired", ctypes.c_uint64),
        ("booted", ctypes.c_uint64),
        ("failures", ctypes.c_uint64),
        ("failing", ctypes.c_uint),
        ("last_error", ctypes.c_int),
        ("last_message", ctypes.c_char * 256),
        ("reserved", ctypes.c_uint64 * 4),
    ]


# enum kiln_pool_empty
POOL_EMPTY = {"wait": 0, "fail": 1, "cold": 2}

_vp = ctypes.c_void_p
_int = ctypes.c_int
_cp = ctypes.c_char_p
_u64 = ctypes.c_uint64

# name: (restype, argtypes)
_PROTOS = {
    "kiln_version": (_cp, []),
    "kiln_host_limitation": (_cp, []),
    "kiln_config_new": (_vp, []),
    "kiln_config_free": (None, [_vp]),
    "kiln_config_set_log": (None, [_vp, LOG_FN, _vp, _int]),
    "kiln_config_set_kernel": (_int, [_vp, _cp]),
    "kiln_config_set_initrd": (_int, [_vp, _cp]),
    "kiln_config_set_cpus": (_int, [_vp, ctypes.c_uint]),
    "kiln_config_set_memory_mib": (_int, [_vp, _u64]),
    "kiln_config_append_cmdline": (_int, [_vp, _cp]),
    "kiln_config_set_console_fds": (_int, [_vp, _int, _int]),
    "kiln_config_set_console_capture": (_int, [_vp, _int]),
    "kiln_config_add_device": (_int, [_vp, _cp]),
    "kiln_config_add_disk": (_int, [_vp, _cp, _int]),
    "kiln_config_add_disk_with": (_int, [_vp, _cp, ctypes.c_uint, _cp]),
    "kiln_config_add_share_at": (_int, [_vp, _cp, _cp, _int, _cp]),
    "kiln_config_set_guest_dir": (_int, [_vp, _cp]),
    "kiln_config_set_accel": (_int, [_vp, _int]),
    "kiln_config_set_ulimit": (_int, [_vp, _cp, _u64, _u64]),
    "kiln_config_add_network": (_int, [_vp, _cp]),
    "kiln_config_set_hostname": (_int, [_vp, _cp]),
    "kiln_network_create": (_int, [_cp, _cp, LOG_FN, _vp]),
    "kiln_network_remove": (_int, [_cp, _int, LOG_FN, _vp]),
    "kiln_network_list": (
        _int,
        [ctypes.POINTER(ctypes.POINTER(NetworkInfo)), ctypes.POINTER(ctypes.c_size_t)],
    ),
    "kiln_network_members": (_int, [_cp, ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_vm_console_wait_for": (
        _int,
        [_vp, _cp, _int, ctypes.POINTER(ctypes.c_void_p)],
    ),
    "kiln_vm_accel": (_int, [_vp]),
    "kiln_vm_stop": (None, [_vp]),
    "kiln_vm_net_stats": (_int, [_vp, ctypes.POINTER(NetStats)]),
    "kiln_vm_outcome": (_int, [_vp]),
    "kiln_exec_opts_init": (None, [ctypes.POINTER(ExecOpts)]),
    "kiln_sandbox_create": (_int, [_vp, ctypes.POINTER(_vp)]),
    "kiln_sandbox_wait_ready": (_int, [_vp, _int]),
    "kiln_sandbox_attach": (
        _int,
        [_cp, LOG_FN, _vp, _int, _int, ctypes.POINTER(_vp)],
    ),
    "kiln_sandbox_vm": (_vp, [_vp]),
    "kiln_sandbox_vsock_path": (_cp, [_vp]),
    "kiln_sandbox_exec": (
        _int,
        [_vp, ctypes.POINTER(ExecOpts), ctypes.POINTER(_vp)],
    ),
    "kiln_exec_write_stdin": (_int, [_vp, _vp, ctypes.c_size_t, _int]),
    "kiln_exec_close_stdin": (_int, [_vp]),
    "kiln_exec_kill": (_int, [_vp, _int]),
    "kiln_exec_resize": (_int, [_vp, ctypes.c_uint, ctypes.c_uint]),
    "kiln_exec_wait": (_int, [_vp, _int, ctypes.POINTER(ExecResult)]),
    "kiln_exec_free": (None, [_vp]),
    "kiln_sandbox_put_file": (_int, [_vp, _cp, ctypes.c_uint, _int, _u64, _int]),
    "kiln_sandbox_get_file": (
        _int,
        [_vp, _cp, _u64, _int, _int, ctypes.POINTER(_u64)],
    ),
    "kiln_sandbox_stop": (_int, [_vp, _int, ctypes.POINTER(ExitInfo)]),
    "kiln_sandbox_destroy": (None, [_vp]),
    "kiln_sandbox_snapshot": (_int, [_vp, _cp]),
    "kiln_sandbox_restore": (_int, [_vp, _cp, _int, ctypes.POINTER(_vp)]),
    "kiln_pool_opts_init": (None, [ctypes.POINTER(PoolOpts)]),
    "kiln_pool_create": (_int, [_vp, ctypes.POINTER(PoolOpts), ctypes.POINTER(_vp)]),
    "kiln_pool_acquire": (_int, [_vp, _int, ctypes.POINTER(_vp)]),
    "kiln_pool_release": (None, [_vp, _vp]),
    "kiln_pool_stats": (None, [_vp, ctypes.POINTER(PoolStats)]),
    "kiln_pool_destroy": (None, [_vp]),
}


def _candidates() -> List[Tuple[str, str]]:
    """(where, path-or-name) pairs, in the order they are tried."""
    out: List[Tuple[str, str]] = []
    env = os.environ.get("KILN_LIBRARY")
    if env:
        out.append(("$KILN_LIBRARY", env))
    here = Path(__file__).resolve().parent
    # the build tree: python/kiln/_lib.py -> build/libkiln.so.0
    build = os.environ.get("BUILD", "build")
    out.append(("build tree", str(here.parent.parent / build / SONAME)))
    # installed: PREFIX/lib/python3*/dist-packages/kiln -> PREFIX/lib
    if len(here.parents) >= 3:
        out.append(("beside the package", str(here.parents[2] / SONAME)))
    found = ctypes.util.find_library("kiln")
    out.append(("system loader", found or SONAME))
    return out


class Lib:
    """The loaded library with its prototypes; ``path`` says which one."""

    def __init__(self, cdll: ctypes.CDLL, path: str, where: str) -> None:
        self.cdll = cdll
        self.path = path
        self.where = where
        for name, (res, args) in _PROTOS.items():
            fn = getattr(cdll, name)
            fn.restype = res
            fn.argtypes = args
            setattr(self, name[len("kiln_"):], fn)

    def guest_dir(self) -> Optional[str]:
        """The default guest beside a build-tree library (build/guest)."""
        d = Path(self.path).resolve().parent / "guest"
        if self.where != "system loader" and (d / "initramfs.cpio.gz").exists():
            return str(d)
        return None


_lock = threading.Lock()
_lib: Optional[Lib] = None


def load() -> Lib:
    """Loads libkiln once; LibraryNotFound says every place it tried."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for where, path in _candidates():
            if "/" in path and not os.path.exists(path):
                tried.append(f"{where}: {path} (missing)")
                continue
            try:
                cdll = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{where}: {path} ({e})")
                continue
            try:
                _lib = Lib(cdll, path, where)
            except AttributeError as e:
                tried.append(f"{where}: {path} (not kiln's library: {e})")
                continue
            return _lib
        raise LibraryNotFound(
            "libkiln could not be loaded; tried:\n  "
            + "\n  ".join(tried)
            + "\nset KILN_LIBRARY to the path of libkiln.so.0"
        )
