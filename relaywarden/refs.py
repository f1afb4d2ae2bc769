"""Reference ids: the short tag a customer quotes and the abuse team searches for."""

from __future__ import annotations

import base64
import os
import re

REF_PATTERN = re.compile(r"^RW-[A-Z2-7]{10}$")


def new_ref() -> str:
    """Ten base32 characters (50 bits): unique enough, short enough to read on a phone."""
    return "RW-" + base64.b32encode(os.urandom(10)).decode("ascii")[:10]
