"""Read a policy file once, check all of it, and say exactly what is wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from relaywarden.policy.schema import Policy

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


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
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, source)) from None


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
