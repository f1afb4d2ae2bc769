"""The start-up line: what this milter runs with, and which checks are effectively off.

One line an operator can grep for after a restart, and one warning per check a
policy leaves silently disabled (DMARC without the relay's outbound addresses,
forged-Received detection without its own names...).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from relaywarden import __version__
from relaywarden.policy import Policy
from relaywarden.policy.loader import DEFAULT_POLICY


def redacted_url(url: str) -> str:
    """A Redis URL without its password."""
    if url.startswith("redis+cluster://") and "@" in url:  # several hosts: not for urlsplit
        auth, _, hosts = url.removeprefix("redis+cluster://").rpartition("@")
        user = auth.partition(":")[0]
        return f"redis+cluster://{user}:***@{hosts}"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def startup_fields(policy: Policy, policy_path: Path | None) -> dict[str, object]:
    return {
        "version": __version__,
        "policy": str(policy_path or DEFAULT_POLICY),
        "redis": redacted_url(policy.redis.client_url),
        "nameservers": list(policy.dns.nameservers) or "system resolver",
        "relay": policy.quarantine.relay,
        "mode": getattr(policy.milter, "mode", "enforce"),
        "listen": policy.milter.listen,
    }


def startup_line(policy: Policy, policy_path: Path | None) -> str:
    fields = startup_fields(policy, policy_path)
    ns = fields["nameservers"]
    ns_text = ", ".join(ns) if isinstance(ns, list) else str(ns)
    return (
        f"relaywarden {fields['version']} starting: policy {fields['policy']},"
        f" redis {fields['redis']}, nameservers {ns_text}, relay {fields['relay']},"
        f" mode {fields['mode']}, listen {fields['listen']}"
    )


def warnings(policy: Policy, policy_path: Path | None) -> list[str]:
    """Checks the policy leaves effectively off, and risky choices, one line each."""
    out: list[str] = []
    sender = policy.checks.sender
    relay = policy.relay
    if policy_path is None or Path(policy_path).resolve() == DEFAULT_POLICY.resolve():
        out.append(
            "running on the packaged default policy (no --config, $RELAYWARDEN_CONFIG or"
            " /etc/relaywarden/policy.toml): no customers, every VPS on plan 'default'"
        )
    if sender.enabled and sender.dmarc_action != "none" and not relay.outbound_ips:
        out.append(
            "DMARC spoofing check is off: [relay] outbound_ips is empty, so SPF cannot be"
            " evaluated for the relay"
        )
    if policy.checks.headers.enabled and not relay.hostnames and not relay.networks:
        out.append(
            "forged-Received check is off: [relay] hostnames and networks are empty,"
            " so no Received header can be recognised as claiming this relay"
        )
    if policy.redis.on_error == "open":
        out.append(
            '[redis] on_error = "open": while Redis fails, mail leaves unchecked by limits'
            " and blocks"
        )
    if getattr(policy.milter, "mode", "enforce") == "shadow":
        out.append(
            '[milter] mode = "shadow": verdicts are computed, logged and counted, but every'
            " message is accepted and nothing is blocked automatically"
        )
    if not policy.limits.enabled:
        out.append("rate limits are off: [limits] enabled = false")
    return out
