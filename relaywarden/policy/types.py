"""Field types shared by the policy sections."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from relaywarden.policy.durations import parse_duration
from relaywarden.subjects import Subject, parse_subject

# Seconds, written in the file as "3s", "2h"...
Duration = Annotated[float, BeforeValidator(parse_duration)]


def _subject(value: object) -> Subject:
    if isinstance(value, Subject):
        return value
    if not isinstance(value, str):
        raise ValueError("a subject is a string like 'network:192.0.2.0/24'")
    return parse_subject(value)


SubjectField = Annotated[Subject, BeforeValidator(_subject)]


class Section(BaseModel):
    """Every policy table: unknown keys are errors, values are checked on load."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
