"""Reference ids: the short tag a customer quotes and the abuse team searches for."""

from __future__ import annotations

import random
import re

REF_PATTERN = re.compile(r"^RW-[A-Z2-7]{10}$")
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_ref() -> str:
    """Ten base32 characters (50 bits): unique enough, short enough to read on a phone.

    From `random`'s generator, seeded from the OS and reseeded in every forked
    worker (the module does that itself): a reference is a name, not a secret,
    and os.urandom is a system call that gives up the GIL, a context switch when
    twenty milter threads wait for it."""
    bits = random.getrandbits(50)
    return "RW-" + "".join(_BASE32[(bits >> shift) & 31] for shift in range(45, -1, -5))


def unique_id() -> str:
    """128 random bits as hex, for ids that only need to be unique (a rate-limit
    reservation's member), on the same generator and for the same reason."""
    return f"{random.getrandbits(128):032x}"
