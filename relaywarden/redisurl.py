"""The Redis URL forms `[redis] url` accepts beyond redis-py's own (redis://,
rediss://, unix://): Sentinel and Cluster. Parsed here, apart from the store, so
the policy schema can validate them without importing the client."""

from __future__ import annotations

from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"


def _host_ports(text: str, what: str) -> list[tuple[str, int]]:
    nodes = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT of a {what}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """(seed nodes, username, password) of a redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,...]
    URL; ValueError naming what is wrong."""
    rest = url.removeprefix(CLUSTER_SCHEME)
    if "?" in rest:
        raise ValueError("redis+cluster:// takes no options after '?'")
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: redis+cluster://HOST:PORT[,...]")
    user, _, password = auth.partition(":")
    return (
        _host_ports(hosts, "cluster node"),
        unquote(user) or None,
        unquote(password) or None,
    )


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """(sentinel nodes, service name, db) of a redis+sentinel:// URL; ValueError if bad."""
    rest = url.removeprefix(SENTINEL_SCHEME)
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    nodes = _host_ports(hosts, "Sentinel")
    if not service:
        raise ValueError("name the Sentinel service: redis+sentinel://HOST:PORT/SERVICE")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return nodes, service, int(db or 0)
