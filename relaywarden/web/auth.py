"""Who is using the web page: argon2 passwords from the policy, sessions in Redis.

The cookie holds only a random token; Redis holds the session under the token's
hash, so a leaked Redis dump yields no usable cookie. Every session carries its
own CSRF token, which every form and API call must echo.

Logging in is throttled per (user name, client address) and per address: the
attempt is counted (Redis INCR, atomic) *before* the password is hashed, so a
burst of concurrent attempts gets exactly `login_attempts` password checks, and
at most MAX_HASHING argon2 verifications (64 MiB each) run at once.

A session ends when idle for `session_idle`, after `session_lifetime` in any
case, when its user leaves the policy, and when the user's password hash in the
policy changes (every session of that user, on the next request after a reload).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from relaywarden.keys import digest
from relaywarden.policy.desk import WebSection
from relaywarden.store import RedisStore, redis_errors

SESSION_COOKIE = "rw_session"
LOGIN_COOKIE = "rw_login"  # pre-session CSRF token of the login form
_HASHER = PasswordHasher()
# Verified against when the user name is unknown, so a wrong name costs as much
# time as a wrong password and does not reveal which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))
# argon2 verifications in flight per process; more wait (up to HASH_WAIT seconds).
MAX_HASHING = 2
HASH_WAIT = 10.0
# Per address, across user names: a sprayer is stopped even if each name is new.
ADDRESS_FACTOR = 10

log = logging.getLogger("relaywarden.web.auth")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@dataclass(frozen=True)
class WebSession:
    user: str
    role: str
    csrf: str
    via: Literal["web", "api"] = "web"  # "api": a service account's token

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def client_address(peer: str | None, forwarded_for: str | None, cfg: WebSection) -> str:
    """The address a login is counted against: the peer, or, when the peer is one
    of the policy's trusted proxies, the last X-Forwarded-For hop that is not."""
    address = peer or "?"
    if not forwarded_for or not cfg.trusted_proxies or not _trusted(address, cfg):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")][-20:]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a forged or garbled header: count the proxy itself
        if not _trusted(hop, cfg):
            return hop
        address = hop
    return address


def _trusted(address: str, cfg: WebSection) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in cfg.trusted_networks)


class LoginResult(Enum):
    OK = "ok"
    WRONG = "wrong"
    THROTTLED = "throttled"
    BUSY = "busy"


class Auth:
    def __init__(self, store: RedisStore, cfg: WebSection, clock: Callable[[], float] = time.time):
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self._hashing = threading.BoundedSemaphore(MAX_HASHING)

    def _key(self, kind: str, text: str) -> str:
        return f"{self.store.keys.prefix}:web:{kind}:{{{digest(text)}}}"

    # -- the throttle -----------------------------------------------------------
    def _attempt_keys(self, user: str, client: str) -> tuple[str, str, str]:
        tag = digest(f"user:{user}")
        return (
            f"{self.store.keys.prefix}:web:try:{{{tag}}}:{digest(client)}",
            f"{self.store.keys.prefix}:web:tryaddrs:{{{tag}}}",
            self._key("tryaddr", client),
        )

    def _count_attempt(self, user: str, client: str) -> bool:
        """Count one attempt; True if it is within the limits (then hash)."""
        pair, addrs, addr = self._attempt_keys(user, client)
        window = int(self.cfg.login_window) + 1
        with redis_errors("login throttle"):
            pipe = self.store.client.pipeline(transaction=False)
            pipe.incr(pair)
            pipe.expire(pair, window, nx=True)
            pipe.sadd(addrs, client)
            pipe.expire(addrs, window)
            pipe.incr(addr)
            pipe.expire(addr, window, nx=True)
            counts = pipe.execute()
        return (
            int(counts[0]) <= self.cfg.login_attempts
            and int(counts[4]) <= self.cfg.login_attempts * ADDRESS_FACTOR
        )

    def _succeeded(self, user: str, client: str) -> None:
        pair, _, _ = self._attempt_keys(user, client)
        with redis_errors("login throttle"):
            self.store.client.delete(pair)

    def lift(self, user: str, client: str | None = None) -> int:
        """End the throttle for `user` (from every address, or one); the count of keys removed."""
        pair, addrs, _ = self._attempt_keys(user, client or "")
        with redis_errors("login throttle"):
            if client:
                return int(self.store.client.delete(pair, self._attempt_keys("", client)[2]))
            members: set[bytes] = self.store.client.smembers(addrs)  # type: ignore[assignment]
            keys = [self._attempt_keys(user, m.decode())[0] for m in members]
            keys += [self._attempt_keys("", m.decode())[2] for m in members]
            return int(self.store.client.delete(addrs, *keys)) if keys else 0

    # -- logging in -----------------------------------------------------------
    def login(self, user: str, password: str, client: str) -> tuple[LoginResult, str | None]:
        """A new session token for valid credentials within the throttle."""
        if not self._count_attempt(user, client):
            log.warning("login throttled for %r from %s", user, client)
            return LoginResult.THROTTLED, None
        account = self.cfg.user(user)
        if not self._hashing.acquire(timeout=HASH_WAIT):
            log.warning("login refused, too many password checks in flight (%r)", user)
            return LoginResult.BUSY, None
        try:
            _HASHER.verify(account.password_hash if account else _DUMMY_HASH, password)
            ok = account is not None
        except (VerificationError, InvalidHashError):
            ok = False
        finally:
            self._hashing.release()
        if not ok or account is None:
            log.warning("login failed for %r from %s", user, client)
            return LoginResult.WRONG, None
        self._succeeded(user, client)
        log.info("login of %r from %s", account.name, client)
        return LoginResult.OK, self._new_session(account.name, account.password_hash)

    def _new_session(self, user: str, password_hash: str) -> str:
        token = secrets.token_urlsafe(32)
        data = {
            "user": user,
            "csrf": secrets.token_urlsafe(32),
            "created": self.clock(),
            "pw": digest(password_hash),
        }
        with redis_errors("session write"):
            self.store.client.set(
                self._key("session", token), json.dumps(data), ex=self._idle_ttl(self.clock())
            )
        return token

    def _idle_ttl(self, created: float) -> int:
        left = created + self.cfg.session_lifetime - self.clock()
        return max(1, int(min(self.cfg.session_idle, left)))

    def session(self, token: str | None) -> WebSession | None:
        if not token or len(token) > 100:
            return None
        key = self._key("session", token)
        with redis_errors("session read"):
            # Read and push the idle expiry out in one round trip (GETEX).
            raw = self.store.client.getex(key, ex=max(1, int(self.cfg.session_idle)))
        if raw is None:
            return None
        data = json.loads(raw)
        # The role comes from the policy in force: a demoted or removed user loses
        # rights at once, not when the session expires; a new password ends every
        # session opened with the old one.
        account = self.cfg.user(data.get("user", ""))
        created = float(data.get("created", 0))
        if (
            account is None
            or data.get("pw") != digest(account.password_hash)
            or created + self.cfg.session_lifetime <= self.clock()
        ):
            with redis_errors("session delete"):
                self.store.client.delete(key)
            return None
        return WebSession(account.name, account.role, data["csrf"])

    def token_session(self, token: str | None) -> WebSession | None:
        """A service account's session from its API token (Authorization: Bearer)."""
        if not token or len(token) > 200:
            return None
        wanted = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        for account in self.cfg.service_accounts:
            if hmac.compare_digest(account.token_sha256, wanted):
                return WebSession(account.name, account.role, "", via="api")
        return None

    def logout(self, token: str | None) -> None:
        if token:
            with redis_errors("session delete"):
                self.store.client.delete(self._key("session", token))
