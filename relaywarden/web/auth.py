"""Who is using the web page: argon2 passwords from the policy, sessions in Redis.

The cookie holds only a random token; Redis holds the session under the token's
hash, so a leaked Redis dump yields no usable cookie. Every session carries its
own CSRF token, which every form and API call must echo.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass

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


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@dataclass(frozen=True)
class WebSession:
    user: str
    role: str
    csrf: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Auth:
    def __init__(self, store: RedisStore, cfg: WebSection):
        self.store = store
        self.cfg = cfg

    def _key(self, kind: str, text: str) -> str:
        return f"{self.store.keys.prefix}:web:{kind}:{{{digest(text)}}}"

    # -- logging in -----------------------------------------------------------
    def throttled(self, user: str, client: str) -> bool:
        with redis_errors("login throttle"):
            counts = self.store.client.mget(
                [self._key("fail", f"user:{user}"), self._key("fail", f"addr:{client}")]
            )
        return any(int(c or 0) >= self.cfg.login_attempts for c in counts)

    def _failed(self, user: str, client: str) -> None:
        with redis_errors("login throttle"):
            pipe = self.store.client.pipeline(transaction=False)
            for key in (self._key("fail", f"user:{user}"), self._key("fail", f"addr:{client}")):
                pipe.incr(key)
                pipe.expire(key, int(self.cfg.login_window) + 1, nx=True)
            pipe.execute()

    def login(self, user: str, password: str, client: str) -> str | None:
        """A new session token for valid credentials, else None (and a failure counted)."""
        account = self.cfg.user(user)
        ok: bool
        try:
            ok = _HASHER.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or account is None:
            self._failed(user, client)
            return None
        token = secrets.token_urlsafe(32)
        data = {"user": account.name, "csrf": secrets.token_urlsafe(32)}
        with redis_errors("session write"):
            self.store.client.set(
                self._key("session", token), json.dumps(data), ex=int(self.cfg.session_lifetime)
            )
        return token

    def session(self, token: str | None) -> WebSession | None:
        if not token or len(token) > 100:
            return None
        with redis_errors("session read"):
            raw = self.store.client.get(self._key("session", token))
        if raw is None:
            return None
        data = json.loads(raw)
        # The role comes from the policy in force: a demoted or removed user loses
        # rights at once, not when the session expires.
        account = self.cfg.user(data.get("user", ""))
        if account is None:
            return None
        return WebSession(account.name, account.role, data["csrf"])

    def logout(self, token: str | None) -> None:
        if token:
            with redis_errors("session delete"):
                self.store.client.delete(self._key("session", token))
