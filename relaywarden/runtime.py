"""What a running milter holds between messages: the policy in force and its clients.

Milter threads read `runtime.policy` once per decision; a reload swaps the whole
object, so a message never sees half of an old policy and half of a new one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from relaywarden.breaker import Breaker
from relaywarden.dns import Resolver
from relaywarden.identity import Inventory
from relaywarden.inventory import build_inventory
from relaywarden.policy import Policy, PolicyError, load_policy
from relaywarden.store import RedisStore, connect

log = logging.getLogger("relaywarden.runtime")


@dataclass
class Overrides:
    """Command-line flags: they win over the file, also after a reload."""

    listen: str | None = None
    redis_url: str | None = None
    nameservers: list[str] = field(default_factory=list)

    def apply(self, policy: Policy) -> Policy:
        if self.nameservers:
            policy = policy.model_copy(
                update={"dns": policy.dns.model_copy(update={"nameservers": self.nameservers})}
            )
        if self.listen:
            policy = policy.model_copy(
                update={"milter": policy.milter.model_copy(update={"listen": self.listen})}
            )
        if self.redis_url:
            policy = policy.model_copy(
                update={"redis": policy.redis.model_copy(update={"url": self.redis_url})}
            )
        return policy


@dataclass(frozen=True)
class Generation:
    """Everything a message is decided with, swapped as one object on reload: a
    message never sees a new policy with the old inventory, or the reverse."""

    policy: Policy
    store: RedisStore
    inventory: Inventory
    resolver: Resolver | None = None


class Runtime:
    def __init__(
        self,
        policy_path: Path | None,
        overrides: Overrides,
        policy: Policy,
        store: RedisStore,
        inventory: Inventory,
        resolver: Resolver | None = None,
    ) -> None:
        self.policy_path = policy_path
        self.overrides = overrides
        self.current = Generation(policy, store, inventory, resolver)
        self._lock = threading.Lock()

    # Readers that need several of these together take `current` once.
    @property
    def policy(self) -> Policy:
        return self.current.policy

    @property
    def store(self) -> RedisStore:
        return self.current.store

    @property
    def inventory(self) -> Inventory:
        return self.current.inventory

    @property
    def resolver(self) -> Resolver | None:
        return self.current.resolver

    @classmethod
    def start(cls, policy_path: Path | None, overrides: Overrides) -> Runtime:
        policy = overrides.apply(load_policy(policy_path))
        store = _store_for(policy)
        inventory = build_inventory(policy, policy_path, store)
        return cls(policy_path, overrides, policy, store, inventory, _resolver_for(policy))

    def reload(self) -> bool:
        """Load the policy file again; keep the old one in force if the new one is bad."""
        with self._lock:
            old = self.current
            try:
                policy = self.overrides.apply(load_policy(self.policy_path))
                store = _store_for(policy) if policy.redis != old.policy.redis else old.store
                # The inventory file the policy names is part of it: bad, refused alike.
                inventory = build_inventory(policy, self.policy_path, store)
            except PolicyError as exc:
                for line in exc.errors:
                    log.error("policy reload refused, old policy stays in force: %s", line)
                return False
            resolver = _resolver_for(policy) if policy.dns != old.policy.dns else old.resolver
            self.current = Generation(policy, store, inventory, resolver)  # one assignment
            getattr(old.inventory, "close", lambda: None)()
            log.info("policy reloaded from %s", self.policy_path or "embedded defaults")
            changed = [
                k for k in AT_START if getattr(policy.milter, k) != getattr(old.policy.milter, k)
            ]
            if changed:
                keys = ", ".join(f"[milter] {k}" for k in changed)
                log.warning("%s changed: read at start only, in force after a restart", keys)
            return True


# [milter] settings the running process cannot take over: the socket is open,
# the workers forked and pinned, libmilter's timeout and name registered.
AT_START = (
    "listen",
    "name",
    "io_timeout",
    "socket_mode",
    "socket_owner",
    "socket_group",
    "socket_dir_mode",
    "workers",
    "pin_cpus",
)


def _store_for(policy: Policy) -> RedisStore:
    cfg = policy.redis
    breaker = Breaker(cfg.breaker_failures, cfg.breaker_interval) if cfg.breaker_interval else None
    client = connect(cfg.client_url, cfg.timeout, breaker)
    return RedisStore(client, policy.redis.key_prefix, policy.redis.events_maxlen)


def _resolver_for(policy: Policy) -> Resolver:
    dns = policy.dns
    return Resolver(
        dns.nameservers,
        timeout=dns.timeout,
        budget=dns.budget,
        max_lookups=dns.max_lookups,
        negative_ttl=dns.negative_ttl,
        max_ttl=dns.max_ttl,
        cache_size=dns.cache_size,
    )
