"""A private Postfix instance: own config, queue and data directories, loopback only.

It never reads or writes /etc/postfix/main.cf, /var/spool/postfix or port 25,
and it is stopped by the PID of the master process we started. Every Postfix
command is run with `-c CONFIG_DIR` and as an argument list (never a shell).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from relaywarden.devstack.procs import (
    LOOPBACK,
    Proc,
    StopsOnExit,
    all_pids,
    free_port,
    kill_pid,
    poll_until,
    proc_info,
)

DAEMON_DIR = Path("/usr/lib/postfix/sbin")
MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"

# Queue directories with owner, group and mode, as in Postfix's own
# $meta_directory/postfix-files ("c" = create if missing). We create them
# ourselves instead of running post-install, which also inspects system dirs.
_QUEUE_DIRS: dict[str, tuple[str, str, int]] = {
    "active": (MAIL_OWNER, "root", 0o700),
    "bounce": (MAIL_OWNER, "root", 0o700),
    "corrupt": (MAIL_OWNER, "root", 0o700),
    "defer": (MAIL_OWNER, "root", 0o700),
    "deferred": (MAIL_OWNER, "root", 0o700),
    "flush": (MAIL_OWNER, "root", 0o700),
    "hold": (MAIL_OWNER, "root", 0o700),
    "incoming": (MAIL_OWNER, "root", 0o700),
    "private": (MAIL_OWNER, "root", 0o700),
    "maildrop": (MAIL_OWNER, SETGID_GROUP, 0o730),
    "public": (MAIL_OWNER, SETGID_GROUP, 0o710),
    "pid": ("root", "root", 0o755),
    "saved": (MAIL_OWNER, "root", 0o700),
    "trace": (MAIL_OWNER, "root", 0o700),
}

# master.cf: the stock Debian services, but nothing chrooted (the chroot would
# need copies of /etc files) and smtpd only on our private loopback port.
# Columns: service type private unpriv chroot wakeup maxproc command.
_MASTER_CF_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _dir_traversable_by_others(path: Path) -> bool:
    """True if every directory up to `path` has the 'x' bit for others.

    Postfix daemons run as user postfix and must reach the queue directory;
    pytest's tmp_path (/tmp/pytest-of-root, mode 0700) does not allow that.
    """
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def _write_settled(path: Path, text: str) -> None:
    """Write a config file atomically and backdate its mtime.

    Postfix refuses to read a table whose mtime is not yet in the past (it may
    still be being edited) and sleeps in 300 ms steps until it is: that cost
    ~1.5 s on every start, reload and postconf. We know the file is complete.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    settled = time.time() - 2
    os.utime(path, (settled, settled))


class PostfixInstance(StopsOnExit):
    """A private Postfix relaying everything to `[127.0.0.1]:relay_port`.

    The master runs in the foreground as our child (`master -d -c CONFIG_DIR`),
    so it is stopped by PID; stop() also makes sure no process of this instance
    survives.
    """

    def __init__(
        self,
        relay_port: int,
        milter: str | None = None,
        *,
        base_dir: Path | None = None,
        extra_main_cf: dict[str, str] | None = None,
        hostname: str = "relay.test",
        start_timeout: float = 30.0,
        keep_dir: bool = False,
        sasl_users: dict[str, str] | None = None,
    ) -> None:
        self.relay_port = relay_port
        self.milter = milter or ""
        self.hostname = hostname
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self._own_base = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="rw-postfix-"))
        self.config_dir = self.base_dir / "etc"
        self.queue_dir = self.base_dir / "spool"
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "maillog"
        self.smtp_port = free_port()
        self.params = self._default_main_cf()
        self.extra_params = dict(extra_main_cf or {})
        # Real SASL (Cyrus, a sasldb in our own directory) when users are given;
        # otherwise logins exist only as XCLIENT LOGIN=.
        self.sasl_users = dict(sasl_users or {})
        # Under the config dir: Debian's Postfix reads $config_directory/sasl/smtpd.conf
        # whatever cyrus_sasl_config_path says (seen with strace on 3.7.11); upstream
        # reads cyrus_sasl_config_path, which names the same directory.
        self.sasl_dir = self.config_dir / "sasl"
        self.sasldb = self.sasl_dir / "sasldb2"
        if self.sasl_users:
            self.params.update(self._sasl_main_cf())
        self.params.update(self.extra_params)
        self.proc: Proc | None = None

    # -- configuration ----------------------------------------------------

    def _default_main_cf(self) -> dict[str, str]:
        return {
            "compatibility_level": "3.7",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            # Logging: our own file via postlogd (needs the postlog service in
            # master.cf, and the directory listed in maillog_file_prefixes).
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base_dir),
            # Identity set explicitly: no hostname/DNS guessing, no /etc/mailname.
            "myhostname": self.hostname,
            "mydomain": "test",
            "myorigin": self.hostname,
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "append_dot_mydomain": "no",
            "biff": "no",
            # Network: listen on 127.0.0.1 only; the only way out is the sink.
            # inet_protocols must include ipv6 or smtpd refuses XCLIENT
            # ADDR=IPV6:... as "Bad ADDR syntax" (it checks the enabled families).
            "inet_protocols": "all",
            "inet_interfaces": LOOPBACK,
            "smtp_bind_address": LOOPBACK,
            "relayhost": f"[{LOOPBACK}]:{self.relay_port}",
            # Never query the machine's resolver: the relay target is a literal IP.
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            # Tests present arbitrary clients (IPv4/IPv6, SASL login) via XCLIENT
            # from loopback, and any presented address may relay. Safe: the
            # listener is on 127.0.0.1 only.
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "mynetworks": "0.0.0.0/0 [::]/0",
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
            ),
            "smtpd_recipient_restrictions": "",
            "disable_vrfy_command": "yes",
            # No real SASL unless sasl_users is given (_sasl_main_cf): XCLIENT
            # LOGIN=... still sets the login name that milters see as
            # {auth_authen} (checked on Postfix 3.7.11).
            "smtpd_sasl_auth_enable": "no",
            # Tests deliberately provoke many rejects on one connection.
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_junk_command_limit": "1000",
            # The milter under test.
            "smtpd_milters": self.milter,
            "non_smtpd_milters": "",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "60s",
            # Messages: long queue ids, big messages and headers, UTF-8.
            "enable_long_queue_ids": "yes",
            "message_size_limit": str(50 * 1024 * 1024),
            "mailbox_size_limit": "0",
            "header_size_limit": str(1024 * 1024),
            "smtputf8_enable": "yes",
            # Deferred / released mail should move within seconds, not minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
        }

    def _sasl_main_cf(self) -> dict[str, str]:
        return {
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            # Cyrus reads $cyrus_sasl_config_path/$smtpd_sasl_path.conf (smtpd.conf).
            "cyrus_sasl_config_path": str(self.sasl_dir),
            "smtpd_sasl_path": "smtpd",
            # Users are stored as user@hostname; a bare "alice" gets this realm.
            "smtpd_sasl_local_domain": self.hostname,
            "smtpd_sasl_security_options": "noanonymous",
            # AUTH in cleartext on loopback: no TLS in the devstack.
            "smtpd_tls_auth_only": "no",
        }

    def _write_sasldb(self) -> None:
        """smtpd.conf and a sasldb with our users, readable by smtpd (user postfix) only."""
        self._make_dir(self.sasl_dir, "root", MAIL_OWNER, 0o750)
        _write_settled(
            self.sasl_dir / "smtpd.conf",
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            f"sasldb_path: {self.sasldb}\n"
            "mech_list: PLAIN LOGIN\n",
        )
        tool = shutil.which("saslpasswd2", path="/usr/sbin:/usr/bin")
        if tool is None:
            raise RuntimeError("saslpasswd2 not found: install sasl2-bin (scripts/setup.sh)")
        for user, password in self.sasl_users.items():
            # -p: the password on stdin (never on a command line); -c: create.
            subprocess.run(
                [tool, "-p", "-c", "-f", str(self.sasldb), "-u", self.hostname, user],
                input=password,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        # smtpd runs as postfix: without read access it logs
        # "warning: SASL authentication failure: Could not open <path>".
        os.chown(self.sasldb, 0, grp.getgrnam(MAIL_OWNER).gr_gid)
        self.sasldb.chmod(0o640)

    def main_cf_text(self) -> str:
        lines = ["# Generated by relaywarden.devstack.postfix; rewritten on every change."]
        for name, value in self.params.items():
            if "\n" in value or "\n" in name:
                raise ValueError(f"main.cf parameter {name!r} must be a single line")
            lines.append(f"{name} = {value}")
        return "\n".join(lines) + "\n"

    def master_cf_text(self) -> str:
        smtpd = f"{LOOPBACK}:{self.smtp_port} inet n - n - - smtpd\n"
        return smtpd + _MASTER_CF_SERVICES

    def _write_config(self) -> None:
        _write_settled(self.config_dir / "main.cf", self.main_cf_text())
        _write_settled(self.config_dir / "master.cf", self.master_cf_text())

    def main_cf_set(self, name: str, value: str) -> None:
        """Change one main.cf parameter; call reload() for a running instance."""
        self.params[name] = value
        self._write_config()

    # -- directories --------------------------------------------------------

    def _prepare_dirs(self) -> None:
        """Create config, queue and data dirs with the ownership Postfix insists on."""
        self.base_dir.chmod(0o755)  # mkdtemp makes 0700; user postfix must traverse it
        if not _dir_traversable_by_others(self.base_dir):
            raise PermissionError(
                f"{self.base_dir}: user {MAIL_OWNER} cannot reach it (a parent lacks o+x)"
            )
        # Root-owned and not group/other writable, or Postfix complains.
        for path in (self.config_dir, self.queue_dir):
            self._make_dir(path, "root", "root", 0o755)
        self._make_dir(self.data_dir, MAIL_OWNER, "root", 0o700)
        for name, (owner, group, mode) in _QUEUE_DIRS.items():
            self._make_dir(self.queue_dir / name, owner, group, mode)

    @staticmethod
    def _make_dir(path: Path, owner: str, group: str, mode: int) -> None:
        path.mkdir(exist_ok=True)
        os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
        path.chmod(mode)  # explicit chmod: mkdir's mode is filtered by the umask

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Write the config, create dirs, start master and wait for the SMTP banner."""
        if self.proc is not None and self.proc.running():
            raise RuntimeError(f"Postfix instance already running (master pid {self.proc.pid})")
        try:
            self._prepare_dirs()
            if self.sasl_users:
                self._write_sasldb()
            self._write_config()
            self._check_config()
            self.proc = Proc(
                [str(DAEMON_DIR / "master"), "-d", "-c", str(self.config_dir)],
                "postfix-master",
                log_path=self.base_dir / "master.out",
                new_session=True,
            )
            poll_until(
                self._smtp_ready, self.start_timeout, f"Postfix smtpd on port {self.smtp_port}"
            )
        except BaseException:
            self.stop()
            raise

    def _check_config(self) -> None:
        """Fail early on a config Postfix would reject or silently ignore.

        `postconf -n` flags unknown names as "unused parameter", which in a
        generated main.cf is nearly always a typo in extra_main_cf.
        """
        out = self.run_tool("postconf", "-n", check=False)
        problems = [
            line
            for line in out.stderr.splitlines()
            if "fatal:" in line or "unused parameter" in line
        ]
        if out.returncode != 0 or problems:
            raise ValueError(f"bad Postfix config in {self.config_dir}:\n{out.stderr}")

    def _smtp_ready(self) -> bool:
        """True once smtpd greets us; raises if the master died meanwhile."""
        assert self.proc is not None
        if not self.proc.running():
            # master reports startup errors (e.g. a non-numeric size limit)
            # only to syslog, which may not exist; point at the likely cause.
            raise RuntimeError(
                f"Postfix master exited ({self.proc.popen.returncode}) before smtpd answered;"
                f" check parameter values (extra_main_cf: {self.extra_params!r}).\n"
                f"{self.proc.log_text()}{self.log_text()}"
            )
        if "fatal:" in self.log_text():
            # e.g. a bad parameter value: smtpd dies on every connection.
            raise RuntimeError(f"Postfix logged a fatal error:\n{self.log_text()}")
        try:
            with socket.create_connection((LOOPBACK, self.smtp_port), timeout=2) as sock:
                sock.settimeout(5)
                banner = sock.recv(512)
                sock.sendall(b"QUIT\r\n")
                return banner.startswith(b"220")
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop master by PID, then make sure no process of this instance is left."""
        if self.proc is not None:
            master_pid = self.proc.pid
            self.proc.stop(timeout)
            self.proc = None
            self._reap_strays(master_pid, timeout)
        if self._own_base and not self.keep_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _reap_strays(self, master_pid: int, timeout: float) -> None:
        """Children exit by themselves after master's SIGTERM; SIGKILL stragglers by PID."""
        try:
            poll_until(lambda: not self.instance_pids(master_pid), timeout / 2, "Postfix children")
        except TimeoutError:
            for pid in self.instance_pids(master_pid):
                kill_pid(pid, signal.SIGKILL)
            poll_until(lambda: not self.instance_pids(master_pid), timeout / 2, "killed children")

    def instance_pids(self, master_pid: int | None = None) -> list[int]:
        """Live PIDs belonging to this instance.

        A process belongs to it if its command line names our config dir, its
        MAIL_CONFIG is our config dir, or it is in the session master created
        (we start master in a new session; children inherit its session id).
        """
        if master_pid is None and self.proc is not None:
            master_pid = self.proc.pid
        return [pid for pid in all_pids() if self._is_ours(pid, master_pid)]

    def _is_ours(self, pid: int, master_pid: int | None) -> bool:
        info = proc_info(pid)
        if info is None or info.state == "Z" or pid == os.getpid():
            return False
        if master_pid is not None and info.session == master_pid:
            return True
        config = str(self.config_dir).encode()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False  # exited while we looked
        return config in cmdline or b"MAIL_CONFIG=" + config in environ

    def reload(self, timeout: float = 15.0, wait: bool = True) -> None:
        """`postfix -c DIR reload`, then wait until no smtpd with the old config is left.

        Postfix applies a reload lazily: idle daemons exit and new ones read the
        new main.cf. Waiting for the old smtpd PIDs to go means the next
        connection sees the new settings (e.g. a new milter). An open client
        session keeps its smtpd (and old settings) alive: close it first, or
        pass wait=False.
        """
        self._write_config()
        old = set(self._child_pids("smtpd"))
        self.run_tool("postfix", "reload")
        if wait:
            poll_until(
                lambda: not old & set(self._child_pids("smtpd")),
                timeout,
                f"old smtpd {sorted(old)} to exit after reload (is an SMTP session still open?)",
            )

    def _child_pids(self, program: str) -> list[int]:
        """PIDs of master's live direct children running `program`."""
        if self.proc is None:
            return []
        master = self.proc.pid
        infos = [proc_info(pid) for pid in all_pids()]
        return [
            i.pid for i in infos if i and i.ppid == master and i.name == program and i.state != "Z"
        ]

    # -- Postfix tools ------------------------------------------------------------

    def run_tool(
        self, tool: str, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run /usr/sbin/<tool> -c CONFIG_DIR args... (argument list, no shell)."""
        argv = [shutil.which(tool, path="/usr/sbin:/usr/bin") or tool, "-c", str(self.config_dir)]
        out = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({out.returncode}): {out.stderr}")
        return out

    def queue(self) -> list[dict[str, Any]]:
        """All queued messages, from `postqueue -j` (one JSON object per line).

        Each has queue_name, queue_id, arrival_time, message_size, sender and
        recipients (list of {address, delay_reason?}).
        """
        out = self.run_tool("postqueue", "-j")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def hold_queue(self) -> list[dict[str, Any]]:
        return [entry for entry in self.queue() if entry.get("queue_name") == "hold"]

    def wait_queue(
        self,
        predicate: Callable[[list[dict[str, Any]]], object],
        timeout: float = 30.0,
        what: str = "queue condition",
    ) -> list[dict[str, Any]]:
        """Poll the queue until predicate(entries) is true; returns the entries."""
        entries: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal entries
            entries = self.queue()
            return bool(predicate(entries))

        poll_until(check, timeout, what, interval=0.2)
        return entries

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        self.wait_queue(lambda entries: not entries, timeout, "the Postfix queue to empty")

    def flush(self) -> None:
        """`postqueue -f`: deliver deferred mail now (like sendmail -q)."""
        self.run_tool("postqueue", "-f")

    def postsuper(self, *args: str) -> str:
        """`postsuper -c DIR args...` (e.g. "-h", queue_id); returns its stderr report."""
        return self.run_tool("postsuper", *args).stderr

    def postcat(self, queue_id: str, *flags: str) -> str:
        """`postcat -q queue_id` (add "-h", "-b", "-e"... to select parts)."""
        return self.run_tool("postcat", *flags, "-q", queue_id).stdout

    def log_text(self) -> str:
        """The instance's mail log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        """Wait until `text` appears in the mail log; returns the log."""
        poll_until(lambda: text in self.log_text(), timeout, f"{text!r} in {self.log_file}")
        return self.log_text()

    def __enter__(self) -> Self:
        self.start()
        return self


__all__ = ["PostfixInstance"]
