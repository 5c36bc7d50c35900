#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Eight sandboxes at once, each its own VM, from eight threads.

    python3 python/examples/parallel.py
"""
import concurrent.futures
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the tree

import kiln  # noqa: E402


def job(i: int) -> str:
    with kiln.Sandbox(memory_mib=128, boot_timeout=300) as sb:
        r = sb.run(["sh", "-c", f"echo sandbox {i}: $(cat /proc/sys/kernel/random/boot_id)"], check=True)
        return r.stdout.decode().strip()


if __name__ == "__main__":
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for line in pool.map(job, range(8)):
            print(line)
    print(f"8 sandboxes in {time.monotonic() - t0:.1f} s")
