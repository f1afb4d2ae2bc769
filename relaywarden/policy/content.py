"""Policy sections for message content: the bounded view kept while the body
streams (`[content]`), campaign fingerprints across all senders (`[campaigns]`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from relaywarden.policy.types import Duration, Section


class ContentCaps(Section):
    """Hard caps on what the content view keeps and how much work one body costs."""

    # Decoded text kept of the first text/plain and of the first text/html part each.
    max_text_bytes: int = Field(default=256 * 1024, ge=1024, le=4 * 1024 * 1024)
    # Body bytes examined; the rest is only counted (a finding says the scan stopped).
    max_scan_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # MIME parts whose headers are parsed; later parts are only counted.
    max_parts: int = Field(default=500, ge=1, le=100_000)
    max_depth: int = Field(default=10, ge=1, le=100)
    max_urls: int = Field(default=200, ge=0, le=10_000)
    max_attachments: int = Field(default=50, ge=0, le=10_000)


class ContentWeights(Section):
    """Scores of what the view found wrong with the MIME structure."""

    too_many_parts: float = 2.0
    nesting_too_deep: float = 2.0
    scan_truncated: float = 0.0
    scan_failed: float = 1.0
    bad_transfer_encoding: float = 1.0
    unknown_charset: float = 0.5
    charset_mismatch: float = 0.5
    unterminated_multipart: float = 0.0
    missing_boundary: float = 1.0
    part_header_too_long: float = 1.0
    # A protected brand named in the text or display name, linking elsewhere.
    phishing_shape: float = 6.0


class ContentSection(Section):
    enabled: bool = True
    caps: ContentCaps = ContentCaps()
    weights: ContentWeights = ContentWeights()
    rspamd: RspamdSection = Field(default_factory=lambda: RspamdSection())


class CampaignsSection(Section):
    """One fingerprint from many senders within a window is a campaign.

    A fingerprint seen from >= `vpses` distinct VPSes or >= `customers` distinct
    customers, or (from more than one customer) to >= `recipients` recipients,
    within `window` of its first sighting, is a finding. One customer's
    newsletter from its own VPS is governed by that customer's plan: the
    recipients rule needs a second customer.
    """

    enabled: bool = True
    window: Duration = 3600.0
    vpses: int = Field(default=4, ge=2)
    customers: int = Field(default=3, ge=2)
    recipients: int = Field(default=200, ge=1)
    action: Literal["quarantine", "tempfail", "reject"] = "quarantine"
    # Texts shorter than this (in words, after normalisation) are too generic to track.
    min_words: int = Field(default=8, ge=1)
    # MinHash bands x rows: a near-duplicate matches when any band matches whole.
    bands: int = Field(default=8, ge=1, le=32)
    rows: int = Field(default=4, ge=1, le=16)

    @model_validator(mode="after")
    def _window(self) -> CampaignsSection:
        if self.window < 60:
            raise ValueError("window must be at least 1m")
        return self


class BlocklistZone(Section):
    """One DNS blocklist: `<registered domain>.<zone>` answering 127.x.y.z means listed."""

    zone: str = Field(min_length=3, max_length=200)
    # "urls": the registered domains of the message's URLs (SURBL/URIBL/DBL style);
    # "senders": the envelope sender's and the From header's registered domains.
    applies_to: Literal["urls", "senders"] = "urls"
    score: float = 5.0
    # Return codes that count, each with its own score; empty: any 127.0.0.0/8
    # answer but 127.255.255.0/24 (the lists' "query refused / over quota" codes).
    codes: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> BlocklistZone:
        zone = self.zone.strip(".")
        if not all(label and len(label) < 64 for label in zone.split(".")) or " " in zone:
            raise ValueError(f"zone {self.zone!r} is not a DNS name")
        for code in self.codes:
            parts = code.split(".")
            if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() for p in parts):
                raise ValueError(f"return code {code!r} is not an address in 127.0.0.0/8")
        return self


class ReputationSection(Section):
    """DNS blocklists for URL and sender domains; none by default."""

    lists: list[BlocklistZone] = Field(default_factory=list)
    # Domains looked up per list and message (the message's DNS budget bounds the time).
    max_domains: int = Field(default=10, ge=1, le=100)
    # A blocklist that fails: "open" skips it (a log line and a metric), "dns"
    # applies [dns] on_error to the message like any other DNS failure.
    on_error: Literal["open", "dns"] = "open"


class SpamBudgetSection(Section):
    """N spam verdicts within W block the VPS (and the customer) automatically.

    A spam verdict: quarantine or harsher with a finding from a content check
    (content, campaigns, reputation, rspamd).
    """

    enabled: bool = True
    spam: int = Field(default=5, ge=1)
    window: Duration = 600.0
    block_for: Duration = 3600.0
    action: Literal["reject", "tempfail"] = "reject"
    scopes: tuple[Literal["vps", "customer"], ...] = ("vps", "customer")


class RspamdSection(Section):
    """An rspamd asked over HTTP (/checkv2) at end of message; off while url is empty."""

    url: str = ""  # e.g. "http://127.0.0.1:11333" (the normal worker)
    timeout: Duration = 2.0  # and never more than what is left of the message's budget
    max_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)  # of body sent
    min_score: float = 5.0  # rspamd scores below this are no finding
    weight: float = 1.0  # the finding's score: rspamd's score x weight
    # rspamd down or slow: "open" judges without it (a log line and a metric),
    # "tempfail" answers 451 4.3.0 so nothing unscanned leaves.
    on_error: Literal["open", "tempfail"] = "open"

    @model_validator(mode="after")
    def _url(self) -> RspamdSection:
        if self.url and not re.fullmatch(r"http://[A-Za-z0-9.\-\[\]:]+:\d{1,5}/?", self.url):
            raise ValueError("url is http://HOST:PORT of rspamd's normal worker")
        return self
