"""`relaywarden run` as systemd runs it: readiness and reload notifications over
NOTIFY_SOCKET, one clear line (exit 3) when an address is taken, a unix socket
with the owner/group/mode Postfix needs, the start-up line and its warnings."""

from __future__ import annotations

import ctypes
import grp
import json
import os
import platform
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywarden.daemon import notify
from relaywarden.daemon.banner import redacted_url
from relaywarden.daemon.sockets import EXIT_CANNOT_LISTEN
from relaywarden.devstack.procs import free_port, poll_until
from relaywarden.store import RedisStore
from tests.redis_backend import url_of

ROOT = Path(__file__).resolve().parents[1]
DEAD_REDIS = "redis://127.0.0.1:1/0"


def start(policy: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "relaywarden", "run", "--config", str(policy), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
    )


def record(line: str) -> dict[str, object]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if record(line).get("level") == "error"]


def policy_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(f'[redis]\nurl = "{DEAD_REDIS}"\n[dns]\nnameservers = ["127.0.0.1:9"]\n' + text)
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def datagrams_until(sock: socket.socket, needle: str) -> list[str]:
    seen: list[str] = []
    while not any(needle in d for d in seen):
        seen.append(sock.recv(4096).decode())
    return seen


def test_ready_reloading_and_stopping_are_notified(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    port = free_port()
    proc = start(
        policy_file(tmp_path), "--listen", f"inet:{port}@127.0.0.1", env={"NOTIFY_SOCKET": path}
    )
    try:
        ready = datagrams_until(sock, "READY=1")
        assert f"MAINPID={proc.pid}" in ready[-1]
        # Ready means libmilter accepts: Postfix may connect at once.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        proc.send_signal(signal.SIGUSR1)  # the unit's ExecReload
        after = datagrams_until(sock, "last reload")
        assert "RELOADING=1" in after[0] and "last reload ok" in after[-1]
        proc.send_signal(signal.SIGUSR2)  # the unit's KillSignal
        assert any("STOPPING=1" in d for d in datagrams_until(sock, "STOPPING=1"))
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait(5)


def test_notify_reaches_an_abstract_socket_and_is_silent_outside_systemd() -> None:
    name = f"rw-notify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"
    assert not notify.notify("READY=1", {})
    assert not notify.notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify.sock"})


def run_to_exit(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaywarden", "run", "--config", str(policy), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )


@pytest.mark.parametrize("which", ["milter", "metrics"])
def test_address_in_use_is_one_line_and_exit_3(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        milter_port = busy if which == "milter" else free_port()
        metrics = f'[metrics]\nlisten = "127.0.0.1:{busy if which == "metrics" else free_port()}"\n'
        out = run_to_exit(
            policy_file(tmp_path, metrics), "--listen", f"inet:{milter_port}@127.0.0.1"
        )
    assert out.returncode == EXIT_CANNOT_LISTEN
    assert "Traceback" not in out.stderr
    errors = error_lines(out.stderr)
    assert len(errors) == 1
    assert f"cannot listen on {which} address" in errors[0]
    assert f":{busy}" in errors[0] and "address already in use" in errors[0]


def test_a_live_unix_socket_of_another_milter_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        out = run_to_exit(policy_file(tmp_path), "--listen", f"unix:{path}")
    assert out.returncode == EXIT_CANNOT_LISTEN
    assert "address already in use" in out.stderr and "Traceback" not in out.stderr


def test_unix_socket_gets_the_configured_group_mode_and_directory(tmp_path: Path) -> None:
    group = grp.getgrnam("postfix")
    sock = Path("/tmp") / f"rw-sock-{os.getpid()}-{free_port()}" / "milter.sock"
    policy = policy_file(
        tmp_path,
        '[milter]\nsocket_group = "postfix"\nsocket_mode = "0660"\nsocket_dir_mode = "0750"\n',
    )
    proc = start(policy, "--listen", f"unix:{sock}")
    try:
        poll_until(lambda: sock.exists() and sock.stat().st_gid == group.gr_gid, 15, "the socket")
        info, parent = sock.stat(), sock.parent.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
        assert parent.st_gid == group.gr_gid and stat.S_IMODE(parent.st_mode) == 0o750
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()


def test_unknown_socket_group_is_refused_in_one_line(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[milter]\nsocket_group = "no-such-group-rw"\n')
    out = run_to_exit(policy, "--listen", f"unix:{tmp_path}/m.sock")
    assert out.returncode == EXIT_CANNOT_LISTEN
    assert "no group named 'no-such-group-rw'" in out.stderr and "Traceback" not in out.stderr


def test_start_up_line_names_what_runs_and_warns_about_checks_left_off(tmp_path: Path) -> None:
    policy = policy_file(tmp_path)
    proc = start(policy, "--listen", f"inet:{free_port()}@127.0.0.1")
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        while not any("listening on" in line for line in lines):
            lines.append(proc.stderr.readline())
    finally:
        proc.terminate()
        proc.wait(15)
    text = "".join(lines)
    start_line = next(line for line in lines if record(line).get("event") == "start")
    for part in (f"policy {policy}", f"redis {DEAD_REDIS}", "nameservers 127.0.0.1:9", "relay "):
        assert part in start_line
    assert "DMARC spoofing check is off: [relay] outbound_ips is empty" in text
    assert "forged-Received check is off" in text


def test_redis_password_never_reaches_the_log() -> None:
    assert redacted_url("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redacted_url("redis://app:s3cret@r/1") == "redis://app:***@r/1"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("command", ["web", "agent"])
def test_web_and_agent_notify_readiness(
    tmp_path: Path, notify_socket: tuple[socket.socket, str], command: str
) -> None:
    from relaywarden.web.auth import hash_password

    sock, path = notify_socket
    port = free_port()
    users = (
        f'[[web.users]]\nname = "ana"\nrole = "operator"\npassword_hash = "{hash_password("pw")}"\n'
    )
    policy = policy_file(tmp_path, f'[web]\nlisten = "127.0.0.1:{port}"\n' + users)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaywarden", command, "--config", str(policy)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": path},
        cwd=ROOT,
    )
    try:
        ready = datagrams_until(sock, "READY=1")
        if command == "web":
            assert f"serving on 127.0.0.1:{port}" in ready[-1]
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        else:
            assert "desk agent for relay" in ready[-1]
    finally:
        proc.terminate()
        proc.wait(15)


def test_schema_version_is_written_once_and_a_newer_one_refuses_to_start(
    redis_store: RedisStore, tmp_path: Path
) -> None:
    from relaywarden.daemon import schema

    assert schema.check(redis_store) == schema.SCHEMA_VERSION
    assert redis_store.client.get(schema.schema_key(redis_store)) == b"1"
    assert schema.check(redis_store) == schema.SCHEMA_VERSION  # idempotent
    redis_store.client.set(schema.schema_key(redis_store), schema.SCHEMA_VERSION + 1)
    with pytest.raises(schema.SchemaMismatch, match="newer than this release"):
        schema.check(redis_store)

    # The milter against that Redis: one line, exit 4, nothing served.
    policy = tmp_path / "p.toml"
    policy.write_text(f'[redis]\nkey_prefix = "{redis_store.keys.prefix}"\n')
    out = run_to_exit(
        policy,
        "--redis-url", url_of(redis_store.client),
        "--listen", f"inet:{free_port()}@127.0.0.1",
    )  # fmt: skip
    assert out.returncode == schema.EXIT_SCHEMA
    errors = error_lines(out.stderr)
    assert len(errors) == 1 and "newer than this release" in errors[0]
    assert "Traceback" not in out.stderr


def test_schema_check_does_not_block_start_when_redis_is_down() -> None:
    import redis as redis_lib

    from relaywarden.daemon import schema

    down = RedisStore(redis_lib.Redis.from_url(DEAD_REDIS, socket_timeout=0.5), "rw")
    assert schema.check(down) is None


def test_with_workers_the_parent_alone_notifies(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    port = free_port()
    policy = policy_file(tmp_path, "[milter]\nworkers = 2\n")
    proc = start(policy, "--listen", f"inet:{port}@127.0.0.1", env={"NOTIFY_SOCKET": path})
    try:
        ready = datagrams_until(sock, "READY=1")
        assert f"MAINPID={proc.pid}" in ready[-1] and "with 2 workers" in ready[-1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        proc.send_signal(signal.SIGHUP)
        after = datagrams_until(sock, "last reload")
        assert "RELOADING=1" in after[0] and not any("READY=1" in d for d in after[:-1])
        proc.send_signal(signal.SIGTERM)
        datagrams_until(sock, "STOPPING=1")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait(5)


# -- libmilter's own signal thread ------------------------------------------------
# rt_sigtimedwait, which sigwait() calls, by machine.
SIGTIMEDWAIT = {"x86_64": 128, "aarch64": 137}


def sigwaiting_threads(pid: int) -> list[int]:
    """Threads of `pid` inside sigwait: libmilter's signal thread."""
    number = str(SIGTIMEDWAIT[platform.machine()])
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                if f.read().split()[0] == number:
                    tids.append(int(tid))
        except FileNotFoundError:
            continue
    return tids


def test_a_sighup_libmilter_takes_for_itself_exits_1_and_says_why(tmp_path: Path) -> None:
    """What the kernel may do under load, made certain: SIGHUP sent to libmilter's
    signal thread itself (tgkill), which takes it and stops the milter. The
    milter must not exit 0 as if asked to stop: a service manager would leave the
    relay without its filter (Restart=on-failure restarts only on a failure)."""
    port = free_port()
    proc = start(policy_file(tmp_path), "--listen", f"inet:{port}@127.0.0.1")
    try:
        poll_until(lambda: sigwaiting_threads(proc.pid), 20, "libmilter's signal thread")
        libc = ctypes.CDLL(None, use_errno=True)
        for tid in sigwaiting_threads(proc.pid):
            assert libc.tgkill(proc.pid, tid, signal.SIGHUP) == 0
        assert proc.wait(30) == 1
        assert "libmilter's own signal thread took" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait(5)


def test_reloads_by_sigusr1_under_cpu_load_never_stop_the_milter(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """The attack on the old reload: SIGHUP under load stopped the milter 3 times in
    12. SIGUSR1 is not one libmilter waits for: 10 reloads while two busy processes
    compete for the CPUs, each notified, the milter still serving."""
    sock, path = notify_socket
    port = free_port()
    spin = "import time\nend = time.monotonic() + 40\nwhile time.monotonic() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    proc = start(
        policy_file(tmp_path), "--listen", f"inet:{port}@127.0.0.1", env={"NOTIFY_SOCKET": path}
    )
    try:
        datagrams_until(sock, "READY=1")
        for _ in range(10):
            proc.send_signal(signal.SIGUSR1)
            assert "last reload ok" in datagrams_until(sock, "last reload")[-1]
        assert proc.poll() is None
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(5)
        proc.kill()
        proc.wait(5)
