# SPDX-License-Identifier: MIT
"""Fixtures for the Python SDK tests: the package from this tree, the
library from the build tree ($BUILD, default build), one shared sandbox."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import kiln  # noqa: E402


def _why_not() -> str:
    try:
        hc = kiln.host_check()
    except kiln.LibraryNotFound as e:
        return str(e)
    if not hc.kvm and not hc.tcg:
        return f"no engine here: {hc.reason}; QEMU is not installed"
    return ""


@pytest.fixture(scope="session")
def engine_ok():
    why = _why_not()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def sb(engine_ok):
    with kiln.Sandbox(memory_mib=256, boot_timeout=120) as s:
        yield s


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> list:
    me = str(os.getpid())
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.append(int(p))
    return out
