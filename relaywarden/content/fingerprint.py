"""Campaign fingerprints: the normalised text of a message as MinHash LSH bands.

Normalisation takes away what differs between copies of one campaign: case,
numbers, URLs' paths and tracking parameters (a URL becomes its registered
domain), e-mail addresses, the recipient's name after a greeting and the pieces
of the recipient's address, and whitespace. The MinHash of the word bigrams is
cut into bands; two copies that differ in a word share most bigrams, so nearly
always at least one whole band, and a band is what Redis looks up.

MinHash is datasketch's scheme (h(x) = (a*x + b) mod (2^61 - 1), 32-bit, one
(a, b) per permutation from a fixed seed, so every relay computes the same
values) in a few lines of numpy: importing datasketch pulls in scipy (~50 MB of
resident memory and 0.7 s of start-up per milter) for these few lines.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from relaywarden.content import decode
from relaywarden.content.view import ContentView
from relaywarden.policy.content import CampaignsSection

MAX_WORDS = 1000  # bigrams of the first 1,000 words: plenty to tell campaigns apart
MAX_CHARS = 12_000  # ... found within this much text (bounds the regex work)
_PRIME = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_GREETING = re.compile(
    r"\b(dear|hi|hello|hey|hallo|bonjour|hola|ciao|liebe|lieber|beste)\s+[^\s,!.:;]{1,40}"
)
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w.-]{1,253}")
# Whole words without digits: "id123" and "2024" are dropped, not split.
_WORD = re.compile(r"\b[^\W\d]+\b")


@dataclass(frozen=True)
class Fingerprint:
    bands: tuple[str, ...]  # hex, one per LSH band; bands[0] names a new campaign
    domains: tuple[str, ...]  # the URL domains (registered), sorted
    words: int

    @property
    def id(self) -> str:
        return self.bands[0]


@lru_cache(maxsize=8)
def _permutations(count: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    gen = np.random.RandomState(seed=1)
    a = gen.randint(1, int(_PRIME), size=count, dtype=np.uint64)
    b = gen.randint(0, int(_PRIME), size=count, dtype=np.uint64)
    return a, b


def _recipient_tokens(rcpts: list[str]) -> set[str]:
    tokens: set[str] = set()
    for rcpt in rcpts[:50]:
        local = rcpt.rsplit("@", 1)[0].lower()
        tokens.update(t for t in re.split(r"[._+-]", local) if len(t) > 1)
    return tokens


def normalise(text: str, rcpts: list[str]) -> list[str]:
    """The words of `text` that copies of one campaign have in common."""
    text = text[:MAX_CHARS].casefold()
    # Each regex walks every character; skip the ones that cannot match (the
    # text is casefolded, so these substrings are exact preconditions).
    if "http" in text or "www." in text:
        text = decode._URL.sub(lambda m: " " + (_url_token(m.group(0))) + " ", text)
    if "@" in text:
        text = _EMAIL.sub(" ", text)
    text = _GREETING.sub(r"\1", text)
    personal = _recipient_tokens(rcpts)
    words = _WORD.findall(text)
    return [w for w in words if w not in personal][:MAX_WORDS]


@lru_cache(maxsize=4096)
def _url_token(url: str) -> str:
    host = decode.url_host(url)
    return decode.registered_domain(host) if host else ""


def minhash(shingles: set[bytes], count: int) -> npt.NDArray[np.uint64]:
    values = np.fromiter(
        (int.from_bytes(hashlib.blake2b(s, digest_size=4).digest(), "little") for s in shingles),
        dtype=np.uint64,
        count=len(shingles),
    )
    a, b = _permutations(count)
    with np.errstate(over="ignore"):  # wrapping multiplication, as datasketch does
        hashed = np.bitwise_and((np.outer(values, a) + b) % _PRIME, _MAX32)
    result: npt.NDArray[np.uint64] = hashed.min(axis=0)
    return result


def fingerprint(view: ContentView, rcpts: list[str], cfg: CampaignsSection) -> Fingerprint | None:
    """None when the text is too short to tell one campaign from another."""
    words = normalise(view.best_text, rcpts)
    if len(words) < cfg.min_words:
        return None
    shingles = {f"{a} {b}".encode() for a, b in itertools.pairwise(words)}
    signature = minhash(shingles, cfg.bands * cfg.rows)
    bands = tuple(
        hashlib.blake2b(
            signature[n * cfg.rows : (n + 1) * cfg.rows].tobytes() + bytes([n]), digest_size=8
        ).hexdigest()
        for n in range(cfg.bands)
    )
    return Fingerprint(bands=bands, domains=tuple(sorted(view.url_domains))[:20], words=len(words))
