"""Read a policy file once, check all of it, and say exactly what is wrong."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from relaywarden.policy.crosscheck import cross_errors
from relaywarden.policy.schema import Policy

# The documented default policy ships inside the package (package data), so an
# installed relay finds it without a source tree. In the repository it is a
# symlink to policies/default.toml: one file, documented in one place.
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "defaults" / "policy.toml"
SYSTEM_POLICY = Path("/etc/relaywarden/policy.toml")
CONFIG_ENV = "RELAYWARDEN_CONFIG"


def discover_policy(
    explicit: Path | str | None = None,
    environ: Mapping[str, str] = os.environ,
    system: Path = SYSTEM_POLICY,
) -> Path:
    """The policy file a command reads: `--config`, else $RELAYWARDEN_CONFIG, else
    /etc/relaywarden/policy.toml, else the packaged default.

    An explicit or environment path is used even when missing (the load then says
    "cannot read"): a typo must not silently fall back to the defaults.
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if system.exists():
        return system
    return DEFAULT_POLICY


class PolicyError(Exception):
    """Every problem in a policy file, each naming the file, key path and reason."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
        elif "[" in item or item.startswith("function-"):
            continue  # pydantic's internal validator names are no help to an operator
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def _describe(exc: ValidationError, source: str) -> list[str]:
    errors = []
    for err in exc.errors():
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        errors.append(f"{source}: {_key_path(err['loc'])}: {reason}")
    return errors


def policy_from_dict(data: dict[str, Any], source: str = "<policy>") -> Policy:
    """The validated policy, or a PolicyError with every problem found in one pass."""
    cross = [f"{source}: {where}: {reason}" for where, reason in cross_errors(data)]
    try:
        policy = Policy.model_validate(data, context={"cross_checked": True})
    except ValidationError as exc:
        raise PolicyError(_describe(exc, source) + cross) from None
    if cross:
        raise PolicyError(cross)
    return policy


def load_policy(path: Path | str | None = None) -> Policy:
    """The policy at `path`, or the shipped default when no path is given."""
    file = Path(path) if path is not None else DEFAULT_POLICY
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError([f"{file}: cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{file}: not valid TOML: {exc}"]) from None
    return policy_from_dict(data, str(file))
