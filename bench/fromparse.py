"""The From parser and header decoding under hostile sizes: decision time of the
end-of-message checks (addresses, headers, sender; DNS answers cached) for From
headers of 1, 10 and 100 KB, and for messages of encoded-word headers.

    python -m bench.fromparse [--rounds N] [--stdlib]

Two policies: the default `[checks.addresses] max_header_bytes` (4 KB: bigger
address headers are refused unparsed) and the largest cap (64 KB, what the
milter keeps of any header), so the parse itself is measured. `parse` is
`parse_address_list` alone on the full size (100 KB is parsed, not truncated).
`--stdlib` adds the standard library's header-registry parser (what this
replaced) at 1 and 10 KB, once each: it is quadratic. Every loop is bounded in
count and in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from relaywarden.addrparse import parse_address_list
from relaywarden.checks import Context, Stage
from relaywarden.devstack.dns import DnsServer
from relaywarden.dns import Resolver
from relaywarden.engine import CHECKS, run_checks
from relaywarden.identity import Inventory, identify
from relaywarden.message import HeaderField, Message, message_from_bytes
from relaywarden.policy import Policy, policy_from_dict

TIME_CAP = 20.0  # seconds per measurement, whatever --rounds says
NOW = 1_795_900_000.0
EOM_CHECKS = [c for c in CHECKS if c.stage == Stage.EOM and not c.name.startswith("limits")]
POLICY = {
    "relay": {"hostnames": ["relay.example.net"], "outbound_ips": ["192.0.2.10"]},
    "brands": {"protected": ["paypal.com"]},
    "customers": [{"id": "shop", "networks": ["203.0.113.0/24"], "domains": ["shop.example"]}],
}
SIZES = [1024, 10 * 1024, 100 * 1024]


def shaped(shape: str, size: int) -> bytes:
    """A From value of about `size` bytes, in one of the hostile shapes."""
    unit = {
        "comments": b"(a (b) \\) c) ",
        "quotes": b'"x\\" y" ',
        "addresses": b"a@shop.example, ",
        "encoded": b"=?utf-8?q?a=2C_=3C=40?= ",
        "nested": b"(",
    }[shape]
    body = unit * (size // len(unit))
    if shape == "nested":
        body += b")" * len(body)  # deep nesting, closed
    elif shape == "addresses":
        return body + b"orders@shop.example"
    return body + b"<orders@shop.example>"


def message_with_from(value: bytes) -> bytes:
    return (
        b"From: " + value + b"\r\nTo: b@example.org\r\nSubject: s\r\n"
        b"Date: Sat, 28 Nov 2026 09:12:00 +0000\r\nMessage-ID: <m@shop.example>\r\n\r\nbody\r\n"
    )


def encoded_word_message(kind: str) -> bytes:
    """About 600 KB of header section made of encoded words."""
    word = b"=?utf-8?q?caf=C3=A9_=2C_=3C_=40?="
    if kind == "many headers":  # 1000 headers of ~600 bytes, folded every 5 words
        line = b"\r\n ".join([b" ".join([word] * 5)] * 4)
        headers = [b"X-Note-%d: " % i + line for i in range(1000)]
    elif kind == "one huge header":  # the milter keeps 64 KB of one header
        headers = [b"Subject: " + b" ".join([word] * 18000)]
    else:  # "encoded-word headers": 10 headers of 60 KB each
        headers = [b"X-Note-%d: " % i + b" ".join([word] * 1800) for i in range(10)]
    return b"\r\n".join([*headers, message_with_from(b"Shop <orders@shop.example>")])


def parsed(msg_bytes: bytes) -> Message:
    return message_from_bytes(msg_bytes, mail_from="orders@shop.example")


def fresh(template: Message) -> Message:
    """The message as the milter holds it at end of message, nothing decoded yet
    (building it from bytes is the bench's cost, not the milter's)."""
    headers = [HeaderField(f.name, f.raw) for f in template.headers]
    return dataclasses.replace(template, headers=headers, notes={})


def decide_eom(template: Message, policy: Policy, resolver: Resolver) -> list[str]:
    msg = fresh(template)
    sender = identify(msg, Inventory(policy.customers))
    ctx = Context(msg, sender, policy, None, resolver.session(), NOW)  # type: ignore[arg-type]
    return [f.name for f in run_checks(EOM_CHECKS, ctx)]


def timed(rounds: int, step: Callable[[], object]) -> float:
    """Median seconds of one call, over at most `rounds` calls and TIME_CAP."""
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(rounds):
        t = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t)
        if time.perf_counter() - started > TIME_CAP:
            break
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fromparse")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--stdlib", action="store_true")
    args = parser.parse_args(argv)
    default = policy_from_dict(POLICY)
    wide = policy_from_dict({**POLICY, "checks": {"addresses": {"max_header_bytes": 65536}}})
    server = DnsServer(Path(tempfile.mkdtemp(prefix="rw-bench-")) / "dns")
    nameserver = server.start()
    try:
        resolver = Resolver([nameserver])
        decide_eom(parsed(message_with_from(b"Shop <orders@shop.example>")), wide, resolver)  # warm
        print("From header decision time (median ms; EOM checks, DNS cached)")
        print(f"{'shape':10} {'size':>7} {'parse':>9} {'cap 4KB':>9} {'cap 64KB':>9}  findings")
        for shape in ("comments", "quotes", "addresses", "encoded", "nested"):
            for size in SIZES:
                value = shaped(shape, size)
                data = parsed(message_with_from(value))
                parse = timed(args.rounds, lambda v=value: parse_address_list(v))  # type: ignore[misc]
                capped = timed(args.rounds, lambda d=data: decide_eom(d, default, resolver))  # type: ignore[misc]
                full = timed(args.rounds, lambda d=data: decide_eom(d, wide, resolver))  # type: ignore[misc]
                names = ",".join(sorted(set(decide_eom(data, wide, resolver)))) or "-"
                print(
                    f"{shape:10} {len(value) // 1024:>5}KB {parse * 1e3:9.3f} "
                    f"{capped * 1e3:9.3f} {full * 1e3:9.3f}  {names}"
                )
        print("\n~600 KB header sections of encoded words (median ms, EOM checks)")
        for kind in ("encoded-word headers", "many headers", "one huge header"):
            raw = encoded_word_message(kind)
            data = parsed(raw)
            ms = timed(max(3, args.rounds // 5), lambda d=data: decide_eom(d, default, resolver))  # type: ignore[misc]
            print(f"{kind:22} {len(raw) // 1024:>5} KB {ms * 1e3:9.2f} ms")
    finally:
        server.stop()
    if args.stdlib:
        from email.headerregistry import HeaderRegistry

        registry = HeaderRegistry()
        print("\nstandard library header-registry parser (the one replaced), one run each")
        for size in (1024, 10 * 1024):
            value = shaped("comments", size).decode()
            t = time.perf_counter()
            registry("From", value)
            print(f"comments {size // 1024:>3}KB {(time.perf_counter() - t) * 1e3:10.1f} ms")


if __name__ == "__main__":
    main()
