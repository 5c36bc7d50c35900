#!/usr/bin/env bash
# Python SDK benchmark (not a timed test), both comparisons in the same run
# on the same engine:
#   1. sb.run(["true"]) round trip from Python vs the C library's
#      kiln_sandbox_run on the same sandbox and connection (one ctypes call
#      per exec, a few microseconds), alternating in BATCHES batches of
#      EXECS each (the guest's speed drifts); medians; target <= 1.1x
#   2. sandbox create-to-first-output: `with kiln.Sandbox() as sb:
#      sb.run(["echo", "hi"])` from Python vs `kiln run -- echo hi` from the
#      shell, best of BOOTS
#   EXECS (20)  BATCHES (20)  BOOTS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${KILN_PYTHON:-/usr/bin/python3}
export BUILD EXECS=${EXECS:-20} BATCHES=${BATCHES:-20} BOOTS=${BOOTS:-3}
[ -e "$BUILD/libkiln.so.0" ] || make -j1 all
exec "$PY" - <<'PYEOF'
import ctypes, os, statistics, subprocess, sys, time
sys.path.insert(0, "python")
import kiln
from kiln import _lib

build = os.environ["BUILD"]
execs, batches, boots = (int(os.environ[k]) for k in ("EXECS", "BATCHES", "BOOTS"))
lib = _lib.load()

with kiln.Sandbox(boot_timeout=300) as sb:
    engine = sb.accel
    for _ in range(5):
        sb.run(["/bin/true"])  # warm the guest's page cache
    o = _lib.ExecOpts()
    lib.exec_opts_init(ctypes.byref(o))
    argv = (ctypes.c_char_p * 2)(b"/bin/true", None)
    o.argv = argv
    res = _lib.ExecResult()
    run_c = lib.cdll.kiln_sandbox_run
    py, c = [], []
    def py_batch():
        t0 = time.monotonic()
        for _ in range(execs):
            sb.run(["/bin/true"])
        py.append((time.monotonic() - t0) / execs * 1e6)

    def c_batch():
        t0 = time.monotonic()
        for _ in range(execs):
            assert run_c(sb._h, ctypes.byref(o), 30000, ctypes.byref(res)) == 0 and res.status == 0
        c.append((time.monotonic() - t0) / execs * 1e6)

    for i in range(batches):  # alternating which goes first
        for f in (py_batch, c_batch) if i % 2 == 0 else (c_batch, py_batch):
            f()
    mp, mc = statistics.median(py), statistics.median(c)
    print(f"python exec round trip: {mp:.0f} us per sb.run(['true']) vs {mc:.0f} us "
          f"for the C library's kiln_sandbox_run on the same sandbox, ratio {mp / mc:.2f} "
          f"(medians of {batches} alternating batches of {execs}; target <= 1.1) ({engine})")

kiln_bin = os.path.join(build, "kiln")
first_t, py_t, cli_t = [], [], []
for _ in range(boots):
    t0 = time.monotonic()
    with kiln.Sandbox(boot_timeout=300) as sb:
        first = sb.run(["echo", "hi"]).stdout
        first_t.append(time.monotonic() - t0)
    py_t.append(time.monotonic() - t0)
    assert first == b"hi\n"
    t0 = time.monotonic()
    out = subprocess.run([kiln_bin, "run", "--", "echo", "hi"], capture_output=True, check=True)
    cli_t.append(time.monotonic() - t0)
    assert out.stdout == b"hi\n"
print(f"python sandbox: first output after {min(first_t) * 1000:.0f} ms, stopped after "
      f"{min(py_t) * 1000:.0f} ms vs {min(cli_t) * 1000:.0f} ms for `kiln run -- echo hi` "
      f"(boot, run, stop), ratio {min(py_t) / min(cli_t):.2f} (best of {boots}) ({engine})")
PYEOF
