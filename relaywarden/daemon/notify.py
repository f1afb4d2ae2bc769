"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.

The protocol is a single `KEY=VALUE\\n...` datagram on the unix socket systemd
names in NOTIFY_SOCKET (an abstract socket when it starts with "@"). Ten lines
of standard library, so no binding to libsystemd (or a dependency) is needed.
Outside systemd NOTIFY_SOCKET is unset and every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("relaywarden.notify")


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=serving") to systemd; True if sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", state.split("\n")[0], exc)
        return False
    return True


def ready(status: str) -> bool:
    return notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")


def reloading(status: str = "reloading the policy") -> bool:
    return notify(f"RELOADING=1\nSTATUS={status}")


def stopping(status: str = "stopping") -> bool:
    return notify(f"STOPPING=1\nSTATUS={status}")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")
