#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A code interpreter for an AI agent: every snippet runs in a fresh
sandbox, with a time limit, and only its output comes back.

The default guest is BusyBox: snippets run under python3 when the guest has
it (an image with Python) and under sh otherwise.

    python3 python/examples/code_interpreter.py 'echo $((6 * 7)); uname -m'
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the tree

import kiln  # noqa: E402


def run_untrusted(code: str, timeout: float = 10.0) -> dict:
    """Runs `code` in a throw-away sandbox; returns what it printed."""
    with kiln.Sandbox(memory_mib=256, boot_timeout=120) as sb:
        has_python = sb.run("command -v python3").ok
        path = "/tmp/snippet.py" if has_python else "/tmp/snippet.sh"
        sb.files.write(path, code.encode())
        argv = ["python3", path] if has_python else ["sh", path]
        try:
            r = sb.run(argv, timeout=timeout, cwd="/tmp")
        except kiln.Timeout as e:
            r = e.result
            return {"timed_out": True, "stdout": r.stdout.decode(errors="replace"), "stderr": "", "exit_code": r.exit_code}
        return {
            "timed_out": False,
            "exit_code": r.exit_code,
            "stdout": r.stdout.decode(errors="replace"),
            "stderr": r.stderr.decode(errors="replace"),
            "seconds": round(r.duration, 3),
        }


if __name__ == "__main__":
    snippet = sys.argv[1] if len(sys.argv) > 1 else "echo hello from $(hostname); ls / | head -3"
    print(run_untrusted(snippet))
    # a snippet that never ends is stopped, and the sandbox with it
    print(run_untrusted("while :; do :; done", timeout=2))
