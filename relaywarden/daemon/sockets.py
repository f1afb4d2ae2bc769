"""The milter's listening socket: refuse early and clearly when it is taken, and
give a unix socket the owner, group and mode Postfix needs to open it.

Postfix's smtpd runs as `postfix` with only its primary group (it drops
supplementary groups), so a unix socket must be group `postfix` (or owned by
it) and group-writable: `[milter] socket_group = "postfix"`, and the service
user needs that group (`SupplementaryGroups=postfix` in the systemd unit) to
hand its socket over.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import time
from pathlib import Path

# `relaywarden run` exits with this when its milter or metrics address is taken.
EXIT_CANNOT_LISTEN = 3


class CannotListen(Exception):
    """The address is taken or cannot be used: one line for the operator."""


def unix_path(listen: str) -> Path | None:
    for prefix in ("unix:", "local:"):
        if listen.startswith(prefix):
            return Path(listen[len(prefix) :])
    return None


def inet_address(listen: str) -> tuple[int, str, int] | None:
    """(family, host, port) of libmilter's `inet:PORT@HOST` / `inet6:PORT@HOST`."""
    for prefix, family, any_host in (
        ("inet:", socket.AF_INET, "0.0.0.0"),
        ("inet6:", socket.AF_INET6, "::"),
    ):
        if listen.startswith(prefix):
            port, _, host = listen[len(prefix) :].partition("@")
            return family, host.strip("[]") or any_host, int(port)
    return None


def probe(listen: str, what: str = "milter") -> None:
    """Raise CannotListen if `listen` is taken. libmilter would only log
    "cannot opensocket" (or, for a unix socket, silently unlink the live socket
    of another milter and take its traffic)."""
    path = unix_path(listen)
    if path is not None:
        _probe_unix(path, listen, what)
        return
    address = inet_address(listen)
    if address is not None:
        family, host, port = address
        probe_tcp(family, host, port, f"{what} address {listen}")


def probe_tcp(family: int, host: str, port: int, label: str) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # libmilter and the metrics server set SO_REUSEADDR too: TIME_WAIT is no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CannotListen(f"cannot listen on {label}: {_reason(exc)}") from None


def probe_hostport(listen: str, label: str) -> None:
    """Probe a `HOST:PORT` address such as `[metrics] listen`."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe_tcp(family, host, int(port), label)


def _probe_unix(path: Path, listen: str, what: str) -> None:
    if not path.exists():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise CannotListen(f"cannot listen on {what} address {listen}: {path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return  # a stale socket of a dead process: libmilter replaces it
    raise CannotListen(
        f"cannot listen on {what} address {listen}: address already in use"
        " (another milter is serving that socket)"
    )


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such local address"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


def _uid(owner: str) -> int:
    if not owner:
        return -1
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group: str) -> int:
    if not group:
        return -1
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def prepare_dir(path: Path, dir_mode: int, owner: str, group: str) -> None:
    """Create the socket's directory if missing, with the group Postfix needs to
    traverse it (an existing directory is left as the operator made it)."""
    directory = path.parent
    if directory.exists():
        return
    directory.mkdir(parents=True, mode=dir_mode)
    directory.chmod(dir_mode)  # mkdir's mode is filtered by the umask
    os.chown(directory, _uid(owner), _gid(group))


def set_owner(path: Path, owner: str, group: str) -> None:
    os.chown(path, _uid(owner), _gid(group))


def wait_and_fix(path: Path, mode: int, owner: str, group: str, deadline: float) -> bool:
    """Once libmilter has created the socket, set its owner, group and mode."""
    while time.monotonic() < deadline:
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            os.chown(path, _uid(owner), _gid(group))
            path.chmod(mode)
            return True
        time.sleep(0.01)
    return False


def check_names(owner: str, group: str) -> list[str]:
    """Problems with socket_owner/socket_group on this host (unknown names)."""
    problems = []
    for kind, name, lookup in (("user", owner, _uid), ("group", group, _gid)):
        try:
            lookup(name)
        except KeyError:
            problems.append(f"no {kind} named {name!r} on this host")
    return problems


def tcp_listening(port: int) -> bool:
    """True once some socket of this host listens on `port` (Linux /proc)."""
    needle = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    # fields[1] local address, fields[3] state (0A = LISTEN)
                    if len(fields) > 3 and fields[3] == "0A" and (fields[1] + " ").endswith(needle):
                        return True
        except OSError:
            continue
    return False


def wait_listening(listen: str, deadline: float) -> bool:
    path = unix_path(listen)
    address = inet_address(listen)
    while time.monotonic() < deadline:
        if path is not None and path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            return True
        if address is not None and tcp_listening(address[2]):
            return True
        time.sleep(0.01)
    return False
