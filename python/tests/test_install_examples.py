# SPDX-License-Identifier: MIT
"""`make install` puts a working package where Debian's python3 finds it;
the examples run."""
import os
import subprocess
import sys

from conftest import ROOT


def test_make_install_python_package(tmp_path):
    build = os.environ.get("BUILD", "build")
    dest = tmp_path / "dest"
    p = subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"BUILD={build}", "PREFIX=/usr", f"DESTDIR={dest}", "install"],
        capture_output=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    site = dest / "usr/lib/python3/dist-packages"
    assert (site / "kiln" / "py.typed").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    env["BUILD"] = str(tmp_path / "nobuild")  # not the tree's library
    q = subprocess.run(
        [sys.executable, "-c", "import kiln; print(kiln.host_check().library)"],
        env=env, capture_output=True, timeout=60, cwd=str(tmp_path),
    )
    assert q.returncode == 0, q.stderr.decode()
    # found beside the installed package: DESTDIR/usr/lib/libkiln.so.0
    assert q.stdout.decode().strip() == str(dest / "usr/lib/libkiln.so.0")
    u = subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"BUILD={build}", "PREFIX=/usr", f"DESTDIR={dest}", "uninstall"],
        capture_output=True, timeout=120,
    )
    assert u.returncode == 0
    assert not (site / "kiln").exists()


def test_examples(engine_ok):
    ex = ROOT / "python" / "examples"
    p = subprocess.run([sys.executable, str(ex / "code_interpreter.py"), "echo $((6 * 7))"],
                       capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "'stdout': '42\\n'" in out and "'timed_out': True" in out, out
    p = subprocess.run([sys.executable, str(ex / "parallel.py")], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert sum(line.startswith("sandbox ") for line in lines) == 8
    assert len({line.split(": ")[1] for line in lines if line.startswith("sandbox ")}) == 8
