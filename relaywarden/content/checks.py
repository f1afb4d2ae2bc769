"""End-of-message checks over the content view: what the MIME structure got
wrong, phishing-shaped messages, and the campaign fingerprint the finish round
trip records (its totals are judged in `campaigns.late_findings`)."""

from __future__ import annotations

import re
from email.utils import parseaddr

from relaywarden.checks import Check, Context, Stage
from relaywarden.content import budget, campaigns
from relaywarden.content.fingerprint import fingerprint
from relaywarden.content.view import ContentView
from relaywarden.domains import domain_of, org_domain
from relaywarden.store import RedisStore
from relaywarden.verdict import Finding

NAME = "content"
# Words a credential phish leans on; a brand named in running text alone is not enough.
_CREDENTIALS = re.compile(
    r"(?i)\b(verify|confirm|log ?in|sign ?in|password|suspend\w*|locked|unusual activity|"
    r"update your (?:account|payment|billing))\b"
)


def _problems(view: ContentView, ctx: Context) -> list[Finding]:
    weights = ctx.policy.content.weights
    out = []
    for problem in view.problems:
        score = float(getattr(weights, problem.replace("-", "_"), 1.0))
        out.append(
            Finding(
                check=NAME,
                name=problem,
                score=score,
                evidence={"parts": view.parts, "scanned": view.scanned},
                reason="malformed message content",
            )
        )
    return out


def _phishing(view: ContentView, ctx: Context) -> list[Finding]:
    brands = ctx.policy.brands.protected
    if not brands or not view.url_domains:
        return []
    msg = ctx.message
    display, address = parseaddr(msg.first_header("From") or "")
    sender_org = org_domain(domain_of(address) or msg.sender_domain or "")
    headline = f"{display} {msg.first_header('Subject') or ''}".casefold()
    text = view.best_text[:65536].casefold()
    for brand in brands:
        org = org_domain(brand)
        if sender_org == org:
            continue
        name = org.split(".", 1)[0]
        pattern = re.compile(rf"\b{re.escape(name)}\b")
        named = bool(pattern.search(headline)) or (
            bool(pattern.search(text)) and bool(_CREDENTIALS.search(text))
        )
        elsewhere = sorted(d for d in view.url_domains if org_domain(d) != org)
        if named and elsewhere:
            return [
                Finding(
                    check=NAME,
                    name="phishing-shape",
                    score=ctx.policy.content.weights.phishing_shape,
                    evidence={"brand": org, "links": elsewhere[:5]},
                    reason=f"names {org} but links elsewhere",
                )
            ]
    return []


def _track(view: ContentView, ctx: Context) -> None:
    cfg = ctx.policy.campaigns
    if not cfg.enabled or not isinstance(ctx.store, RedisStore):
        return
    fp = fingerprint(view, ctx.message.rcpts, cfg)
    if fp is not None:
        ctx.message.notes[campaigns.NOTE] = campaigns.Tracked(fp, cfg.window)


def run(ctx: Context) -> list[Finding]:
    budget.remember(ctx.message.notes, ctx.policy)
    view = ctx.message.content
    if view is None or not ctx.policy.content.enabled:
        return []
    _track(view, ctx)
    return _problems(view, ctx) + _phishing(view, ctx)


CHECK = Check("content", Stage.EOM, run, needs_body=lambda policy: policy.content.enabled)
