# SPDX-License-Identifier: MIT
"""The Python SDK on real sandboxes (whichever engine runs here)."""
import asyncio
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import kiln
import kiln.aio
from conftest import ROOT, children, fd_count


def test_exit_codes(sb):
    assert sb.run(["true"]).exit_code == 0
    r = sb.run("exit 7")
    assert (r.exit_code, r.signal, r.ok) == (7, 0, False)
    assert sb.run(["/no/such/program"]).exit_code == 127
    with pytest.raises(kiln.CommandError) as ei:
        sb.run(["false"], check=True)
    assert ei.value.result.exit_code == 1
    assert sb.run(["true"], check=True).ok


def test_signal(sb):
    r = sb.run("kill -TERM $$")
    assert r.signal == signal.SIGTERM
    assert r.exit_code == 128 + signal.SIGTERM
    p = sb.exec(["sleep", "30"])
    p.kill(signal.SIGKILL)
    r = p.wait(timeout=30)
    assert r.signal == signal.SIGKILL


def test_output_10mib_byte_exact(sb):
    # 10 MiB of a known pseudo-random stream, plus its digest from the guest
    r = sb.run("head -c 10485760 /dev/urandom >/tmp/big && md5sum </tmp/big >&2 && cat /tmp/big", timeout=120)
    assert r.exit_code == 0
    assert len(r.stdout) == 10 * 1024 * 1024
    assert hashlib.md5(r.stdout).hexdigest() == r.stderr.split()[0].decode()


def test_stdin_bytes_and_streaming(sb):
    data = os.urandom(300_000)
    r = sb.run(["md5sum"], stdin=data)
    assert r.stdout.split()[0].decode() == hashlib.md5(data).hexdigest()
    p = sb.exec(["cat"], stdin=True)
    for i in range(5):
        p.write(b"line %d\n" % i)
    p.close_stdin()
    r = p.wait(timeout=30)
    assert r.stdout == b"".join(b"line %d\n" % i for i in range(5))


def test_stream_output_chunks(sb):
    p = sb.exec("for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.2; done")
    seen = {"stdout": b"", "stderr": b""}
    for stream, data in p:
        seen[stream] += data
    assert seen == {"stdout": b"out1\nout2\nout3\n", "stderr": b"err1\nerr2\nerr3\n"}
    assert p.wait().exit_code == 0


def test_env_and_cwd(sb):
    r = sb.run(["sh", "-c", 'echo "$GREETING" && pwd'], env={"GREETING": "hi there"}, cwd="/tmp")
    assert r.stdout == b"hi there\n/tmp\n"
    assert sb.run(["true"], cwd="/no/such/dir").exit_code != 0


def test_timeout(sb):
    t0 = time.monotonic()
    with pytest.raises(kiln.Timeout) as ei:
        sb.run("echo started; sleep 30", timeout=1)
    assert time.monotonic() - t0 < 20
    assert ei.value.result is not None
    assert ei.value.result.exit_code == 124
    assert ei.value.result.stdout == b"started\n"
    # a wait's own timeout leaves the command running
    p = sb.exec(["sleep", "5"])
    with pytest.raises(kiln.Timeout):
        p.wait(timeout=0.2)
    assert p.returncode is None
    p.kill()
    assert p.wait(timeout=30).signal == signal.SIGKILL


def test_files_round_trip_5mib(sb, tmp_path):
    data = os.urandom(5 * 1024 * 1024)
    sb.files.write("/tmp/five", data, mode=0o600)
    assert sb.files.read("/tmp/five") == data
    r = sb.run(["stat", "-c", "%a %s", "/tmp/five"])
    assert r.stdout == b"600 5242880\n"
    # streaming, through a real file and through a non-file object
    src = tmp_path / "src.bin"
    src.write_bytes(data[:1_000_000])
    with open(src, "rb") as f:
        sb.files.write_stream("/tmp/one", f)
    sb.files.write("/tmp/two", io.BytesIO(b"from BytesIO"))
    assert sb.files.read("/tmp/two") == b"from BytesIO"
    out = tmp_path / "out.bin"
    with open(out, "wb") as f:
        assert sb.files.read_stream("/tmp/one", f) == 1_000_000
    assert out.read_bytes() == data[:1_000_000]
    buf = io.BytesIO()
    sb.files.read_stream("/tmp/one", buf)
    assert buf.getvalue() == data[:1_000_000]
    with pytest.raises(kiln.KilnError):
        sb.files.read("/no/such/file")
    with pytest.raises(kiln.KilnError):
        sb.files.read("/tmp/five", max_size=10)


def test_concurrent_execs_from_threads(sb):
    results = [None] * 20
    errors = []

    def one(i):
        try:
            results[i] = sb.run(["sh", "-c", f"sleep 0.$((RANDOM % 5)); echo {i}"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert [r.stdout for r in results] == [b"%d\n" % i for i in range(20)]


def test_processes_fed_from_several_threads(sb):
    procs = [sb.exec(["cat"], stdin=True) for _ in range(4)]

    def feed(p, i):
        for _ in range(50):
            p.write(b"x" * 1000 + b"%d\n" % i)
        p.close_stdin()

    threads = [threading.Thread(target=feed, args=(p, i)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for i, p in enumerate(procs):
        r = p.wait(timeout=120)
        assert r.stdout == (b"x" * 1000 + b"%d\n" % i) * 50
    for t in threads:
        t.join()


def test_asyncio_concurrency(engine_ok):
    async def main():
        async with kiln.aio.Sandbox(boot_timeout=120) as sb:
            t0 = time.monotonic()
            rs = await asyncio.gather(*(sb.run(["sh", "-c", f"sleep 1; echo {i}"]) for i in range(8)))
            took = time.monotonic() - t0
            assert [r.stdout for r in rs] == [b"%d\n" % i for i in range(8)]
            # concurrent, not one after the other
            assert took < 8
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            t = asyncio.ensure_future(ticker())
            p = await sb.exec(["sh", "-c", "echo a; sleep 1; echo b"])
            chunks = [d async for _, d in p]
            t.cancel()
            assert b"".join(chunks) == b"a\nb\n"
            assert ticks >= 5  # the loop ran while we waited
            await sb.files.write("/tmp/x", b"async")
            assert await sb.files.read("/tmp/x") == b"async"

    asyncio.run(main())


def test_misuse(engine_ok):
    with pytest.raises(TypeError):
        kiln.Sandbox(cpus="2")
    with pytest.raises(ValueError):
        kiln.Sandbox(accel="warp")
    with pytest.raises(TypeError):
        kiln.Sandbox(shares=["/tmp"])
    with pytest.raises(ValueError):
        kiln.Sandbox(cpus=2**40)
    with pytest.raises(TypeError):
        kiln.Sandbox(shares=[kiln.Share(123, "t")]).start()
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox(memory_mib=1).start()  # below kiln's minimum
    with pytest.raises(kiln.KilnError) as ei:
        kiln.Sandbox(kernel="/no/such/kernel", initrd="/no/such/initrd").start()
    assert ei.value.errno != 0
    sb = kiln.Sandbox(boot_timeout=120)
    with pytest.raises(kiln.ClosedError):
        sb.run(["true"])  # never started
    sb.start()
    with pytest.raises(TypeError):
        sb.run(42)
    with pytest.raises(ValueError):
        sb.run([])
    with pytest.raises(ValueError):
        sb.run(["echo", "a\0b"])
    with pytest.raises(TypeError):
        sb.run(["cat"], stdin="text")
    with pytest.raises(ValueError):
        sb.run(["true"], timeout=-1)
    with pytest.raises(ValueError):
        sb.run(["true"], timeout=float("nan"))
    assert sb.run(["true"], timeout=float("inf")).ok
    with pytest.raises(TypeError):
        sb.run(["true"], env=["A=B"])
    with pytest.raises(ValueError):
        sb.run(["true"], env={"A=B": "c"})
    with pytest.raises(kiln.KilnError):
        sb.run(["echo", "x" * (8 << 20)])  # far beyond an exec's size
    with pytest.raises(ValueError):
        sb.files.write("/tmp/x", b"", mode=0o70000)
    with pytest.raises(TypeError):
        sb.files.write("/tmp/x", 12)
    p = sb.exec(["true"])
    p.wait(timeout=30)
    with pytest.raises(kiln.KilnError):
        p.write(b"no stdin")
    p.close()
    p.close()
    assert sb.run(["echo", "still fine"]).stdout == b"still fine\n"
    sb.close()
    sb.close()  # twice is fine
    with pytest.raises(kiln.ClosedError):
        sb.run(["true"])
    with pytest.raises(kiln.ClosedError):
        sb.files.read("/etc/hostname")
    with pytest.raises(kiln.ClosedError):
        sb.start()


def test_boot_error_carries_console(engine_ok):
    with pytest.raises(kiln.BootError) as ei:
        kiln.Sandbox(boot_timeout=0.001).start()
    assert ei.value.errno in (110, 32)  # ETIMEDOUT / EPIPE
    assert isinstance(ei.value.console, str)


def test_console(sb):
    assert "kiln" in sb.console.text() or sb.console.text() != ""
    assert sb.accel in ("kvm", "tcg")
    sb.run("echo console-marker-1 >/dev/console", check=True)
    assert "console-marker-1" in sb.console.wait_for("console-marker-1", timeout=30)
    with pytest.raises(kiln.Timeout):
        sb.console.wait_for("never-printed", timeout=0.2)


def test_close_while_console_waits(engine_ok):
    sb = kiln.Sandbox(boot_timeout=120).start()
    errs = []

    def waiter():
        try:
            sb.console.wait_for("never-printed", timeout=60)
        except kiln.KilnError as e:
            errs.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    sb.close()
    t.join(30)
    assert not t.is_alive() and len(errs) == 1
    assert time.monotonic() - t0 < 30


def test_dropped_process_is_safe(sb):
    import gc

    sb.exec("for i in $(seq 1 50); do echo dropped $i; sleep 0.01; done")  # not kept
    gc.collect()
    r = sb.run("sleep 1; echo kept")  # its wait moves the dropped one's output
    gc.collect()
    assert r.stdout == b"kept\n"


def test_nothing_leaks(engine_ok):
    before_fds = fd_count()
    before_kids = set(children())
    for _ in range(2):
        with kiln.Sandbox(boot_timeout=120) as sb:
            assert sb.run(["echo", "x"]).stdout == b"x\n"
            sock = sb.vsock_path
            assert os.path.exists(sock)
    assert not os.path.exists(sock)
    deadline = time.monotonic() + 10
    while set(children()) - before_kids and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(children()) - before_kids == set()
    assert fd_count() == before_fds


def test_exception_in_block_stops_the_sandbox(engine_ok):
    before = set(children())
    with pytest.raises(RuntimeError):
        with kiln.Sandbox(boot_timeout=120) as sb:
            sb.run(["true"])
            raise RuntimeError("boom")
    assert sb.closed
    deadline = time.monotonic() + 10
    while set(children()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(children()) - before == set()


def test_share(engine_ok, tmp_path):
    (tmp_path / "in.txt").write_text("from the host")
    shares = [kiln.Share(str(tmp_path), "work", guest_path="/work")]
    with kiln.Sandbox(shares=shares, boot_timeout=120) as sb:
        assert sb.run(["cat", "/work/in.txt"]).stdout == b"from the host"
        sb.run("echo from the guest > /work/out.txt", check=True)
    assert (tmp_path / "out.txt").read_text() == "from the guest\n"


def test_interpreter_exit_stops_sandboxes(engine_ok):
    code = (
        "import kiln, os\n"
        "sb = kiln.Sandbox(boot_timeout=120).start()\n"
        "print(sb.run(['echo', 'up']).stdout.decode(), end='', flush=True)\n"
        "os.environ['X'] = '1'\n"
        # no close: atexit must stop it
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=180)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"up\n"


def test_attach_to_kiln_start(engine_ok, tmp_path):
    kiln_bin = str(ROOT / os.environ.get("BUILD", "build") / "kiln")
    name = f"py{os.getpid()}"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    os.chmod(tmp_path, 0o700)
    st = subprocess.run([kiln_bin, "start", "--boot-timeout", "120", "--name", name], env=env, capture_output=True, timeout=180)
    assert st.returncode == 0, st.stderr.decode()
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path)
    try:
        sb = kiln.Sandbox.attach(name)
        assert sb.run(["echo", "attached"]).stdout == b"attached\n"
        sb.close()  # detaches; the VM keeps running
        sb2 = kiln.Sandbox.attach(name)
        assert sb2.run(["true"]).ok
        sb2.close()
        with pytest.raises(kiln.KilnError):
            kiln.Sandbox.attach(name + "-missing")
    finally:
        if old is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = old
        subprocess.run([kiln_bin, "stop", name], env=env, capture_output=True, timeout=60)


def test_host_check():
    hc = kiln.host_check()
    assert isinstance(hc.kvm, bool) and isinstance(hc.tcg, bool)
    assert hc.kvm or hc.reason
    assert hc.library
    assert kiln.library_version().count(".") == 2


def test_library_not_found_says_where_it_looked(tmp_path):
    code = "import kiln\ntry:\n    kiln.host_check()\nexcept kiln.LibraryNotFound as e:\n    print(e)\n"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "python"),
        KILN_LIBRARY=str(tmp_path / "nope.so"),
        BUILD=str(tmp_path / "nobuild"),
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert "$KILN_LIBRARY" in out and "build tree" in out and "system loader" in out, out


def test_pip_install_offline(tmp_path):
    import shutil

    target = tmp_path / "site"
    # a copy: setuptools builds in the source tree (build/, *.egg-info)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
         "--target", str(target), str(src)],
        capture_output=True,
        timeout=300,
    )
    if p.returncode != 0 and b"No module named pip" in p.stderr:
        pytest.skip("pip is not installed for this python")
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert (target / "kiln" / "py.typed").exists()
    lib = ROOT / os.environ.get("BUILD", "build") / "libkiln.so.0"
    env = dict(os.environ, PYTHONPATH=str(target), KILN_LIBRARY=str(lib))
    q = subprocess.run(
        [sys.executable, "-c", "import kiln; print(kiln.library_version())"],
        env=env, capture_output=True, timeout=60, cwd=str(tmp_path),
    )
    assert q.returncode == 0 and q.stdout.strip(), q.stderr.decode()


def test_network(engine_ok):
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello python")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with kiln.Sandbox(net="user", allow=[f"host:{port}"], boot_timeout=120) as sb:
            r = sb.run(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 10.0.2.2 {port}")
            assert b"hello python" in r.stdout
            r = sb.run("printf x | nc -w 5 192.168.1.1 80")
            assert r.exit_code != 0
            st = sb.net_stats()
            assert st["tx_denied"] >= 1 and st["tx_frames"] > 0 and st["rx_frames"] > 0
        with kiln.Sandbox(boot_timeout=120) as sb:
            assert sb.run("ls /sys/class/net").stdout == b"lo\n"
            with pytest.raises(kiln.KilnError):
                sb.net_stats()
    finally:
        srv.shutdown()
    with pytest.raises(ValueError):
        kiln.Sandbox(allow=["1.2.3.4"])
    with pytest.raises(ValueError):
        kiln.Sandbox(net="bridge")
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox(net="user", allow=["1.2.3.0/16"]).start()


def test_cluster_network(engine_ok, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox(networks=["nosuch"], boot_timeout=120).start()
    kiln.network_create("pynet", "10.77.0.0/24")
    try:
        assert [(n.name, n.subnet, n.running) for n in kiln.networks()] == [("pynet", "10.77.0.0/24", True)]
        with pytest.raises(kiln.KilnError):
            kiln.network_create("pynet")
        with kiln.Sandbox(networks=["pynet"], hostname="srv", boot_timeout=120) as srv, kiln.Sandbox(
            networks=["pynet"], hostname="cli", boot_timeout=120
        ) as cli:
            assert kiln.networks()[0].members == 2
            listener = srv.exec("nc -l -p 7000")
            r = None
            for _ in range(10):
                r = cli.run("echo by-name | nc -w 5 srv 7000")
                if r.exit_code == 0:
                    break
                time.sleep(0.5)
            assert r is not None and r.exit_code == 0
            assert listener.wait(timeout=30).stdout == b"by-name\n"
            assert cli.run("hostname").stdout == b"cli\n"
            with pytest.raises(kiln.KilnError):
                kiln.network_remove("pynet")  # members: refused
    finally:
        kiln.network_remove("pynet", force=True)
    assert kiln.networks() == []


def test_disk_snapshot(engine_ok, tmp_path):
    base = tmp_path / "base.img"
    base.write_bytes(b"kiln" * (256 << 10))
    before = hashlib.md5(base.read_bytes()).hexdigest()
    with kiln.Sandbox(disks=[kiln.Disk(str(base), snapshot=True)], boot_timeout=120) as sb:
        sb.run("printf CHANGED | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null", check=True)
        assert sb.run("head -c 7 /dev/vda").stdout == b"CHANGED"
    assert hashlib.md5(base.read_bytes()).hexdigest() == before
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox(disks=[kiln.Disk(str(base), format="vmdk")]).start()


def test_ulimits(engine_ok):
    with kiln.Sandbox(ulimits={"nofile": 64, "nproc": (100, 200)}, boot_timeout=120) as sb:
        assert sb.run("ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu").stdout == b"64\n64\n100\n200\n"
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox(ulimits={"files": 5}).start()
    with pytest.raises(ValueError):
        kiln.Sandbox(ulimits={"nofile": -1})


def test_pool(engine_ok):
    ids = set()
    with kiln.Pool(size=1, boot_timeout=120, env={"WHO": "member"}) as pool:
        for _ in range(3):
            with pool.acquire(timeout=120) as sb:
                r = sb.run('cat /proc/sys/kernel/random/boot_id; echo "$WHO"', check=True)
                boot_id, who = r.stdout.decode().split()
                assert who == "member"
                ids.add(boot_id)
        st = pool.stats()
        assert st["acquired"] == 3 and st["failures"] == 0 and st["target"] == 1
    assert len(ids) == 3  # a member is never reused
    # members cannot boot: the error comes back instead of a wait
    bad = kiln.Pool(size=1, kernel="/etc/hostname", initrd="/etc/hostname")
    try:
        with pytest.raises(kiln.KilnError):
            bad.acquire(timeout=60)
        assert bad.stats()["failures"] >= 1
    finally:
        bad.close()
    with pytest.raises(kiln.ClosedError):
        bad.acquire()
    with pytest.raises(ValueError):
        kiln.Pool(empty="sometimes")


def test_snapshot_needs_kvm(engine_ok, tmp_path):
    with kiln.Sandbox(boot_timeout=120) as sb:
        if sb.accel == "kvm":
            pytest.skip("kvm engine: the Linux snapshot tier covers it")
        with pytest.raises(kiln.KilnError, match="emulating engine"):
            sb.snapshot(str(tmp_path / "tpl"))
        assert sb.run("true").exit_code == 0  # it goes on
    with pytest.raises(kiln.KilnError):
        kiln.Sandbox.restore(str(tmp_path / "none"))
