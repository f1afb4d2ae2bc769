"""Whether one hostile held message can freeze the desk: GET /login latency while
the preview of a 200 KB `"<script"` x n HTML body is requested over and over.

1. build_preview in-process: the old tag-stripping regex vs the selectolax
   conversion (the old one is inlined here, for comparison only).
2. A real `relaywarden web` process (uvicorn) on loopback: GET /login timed
   alone, then while another client keeps asking for the hostile message's page.

    python -m bench.desk_preview [--requests 20]

A real redis-server on loopback; the "hold queue" is a postcat/postqueue pair
of shell scripts that print the hostile message (no Postfix needed). Every loop
is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from relaywarden.desk import index
from relaywarden.desk.index import Entry
from relaywarden.desk.preview import build_preview
from relaywarden.devstack.redis import RedisServer
from relaywarden.devstack.web import WebProcess
from relaywarden.store import RedisStore, connect
from relaywarden.web.auth import hash_password

QID = "4jbxmr3LvPzJ9Nx"
HOSTILE = (
    b"Subject: hostile\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
    + b"<script" * 30_000  # 210 KB, the penetration test's body
)
_OLD_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
RUN_SECONDS = 120.0
TIMEOUT = 60.0  # per request; a GET /login that waits longer is counted as 60 s
WARM_UP = 3.0  # seconds between the first hostile view's start and the timed logins


def old_strip(raw: bytes) -> None:
    body = raw.split(b"\r\n\r\n", 1)[1].decode()
    _OLD_TAG.sub(" ", body[:60_000])  # a quarter of it already takes seconds


def timed(fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def fake_postfix(bindir: Path, message: Path) -> None:
    bindir.mkdir()
    hold = json.dumps({"queue_name": "hold", "queue_id": QID})
    scripts = {"postcat": f"#!/bin/sh\ncat {message}\n", "postqueue": f"#!/bin/sh\necho '{hold}'\n"}
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)


def login(client: httpx.Client) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token
    data = {"username": "bench", "password": "bench-password", "csrf": token.group(1)}
    assert client.post("/login", data=data).status_code in (200, 303)


def login_latency(url: str, requests: int) -> list[float]:
    """Milliseconds per GET /login; a request that times out counts as TIMEOUT."""
    out = []
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        for _ in range(requests):
            started = time.perf_counter()
            with contextlib.suppress(httpx.TimeoutException):
                assert client.get("/login").status_code == 200
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    print("build_preview of the hostile body (in-process)")
    print(f"  old regex on the first 60 KB only  {timed(old_strip, HOSTILE):9.1f} ms")
    print(f"  selectolax, whole 210 KB           {timed(build_preview, HOSTILE, 8000):9.1f} ms")

    workdir = Path(tempfile.mkdtemp(prefix="rw-bench-preview-"))
    redis = RedisServer()
    try:
        url = redis.start(workdir / "redis")
        message = workdir / "hostile.eml"
        message.write_bytes(HOSTILE)
        fake_postfix(workdir / "bin", message)
        policy = workdir / "policy.toml"
        policy.write_text(
            '[quarantine]\nrelay_name = "bench"\npostfix_config_dir = "/nonexistent"\n'
            f'postfix_bin_dir = "{workdir / "bin"}"\n'
            f'[[web.users]]\nname = "bench"\nrole = "viewer"\n'
            f'password_hash = "{hash_password("bench-password")}"\n'
        )
        store = RedisStore(connect(url, 5.0))
        entry = Entry(QID, "bench", time.time(), "RW-ABCDEFGHIJ", None, "203.0.113.7", "",
                      "promo@example", ["a@example.org"], 1, "hostile", "", 5.0, [])  # fmt: skip
        pipe = store.client.pipeline()
        index.queue_write(store, pipe, entry, 3600)
        pipe.execute()
        with WebProcess(policy, url, workdir) as web:
            alone = login_latency(web.url, args.requests)
            stop = threading.Event()
            previews: list[float] = []

            def hammer() -> None:
                with httpx.Client(base_url=web.url, timeout=TIMEOUT) as client:
                    login(client)
                    deadline = time.monotonic() + RUN_SECONDS
                    while not stop.is_set() and time.monotonic() < deadline:
                        started = time.perf_counter()
                        try:
                            page = client.get(f"/message/{QID}")
                            assert page.status_code == 200 and "hostile" in page.text
                        except httpx.TimeoutException:
                            pass
                        previews.append((time.perf_counter() - started) * 1000)

            thread = threading.Thread(target=hammer)
            thread.start()
            time.sleep(WARM_UP)  # the first hostile view is under way
            busy = login_latency(web.url, args.requests)
            stop.set()
            thread.join(RUN_SECONDS)
        print(f"GET /login on a real `relaywarden web`, {args.requests} requests")
        print(f"  alone                              median {statistics.median(alone):7.1f} ms"
              f"  max {max(alone):7.1f} ms")  # fmt: skip
        print(f"  while the hostile page is viewed   median {statistics.median(busy):7.1f} ms"
              f"  max {max(busy):7.1f} ms")  # fmt: skip
        if previews:
            mid, top = statistics.median(previews), max(previews)
            print(f"  hostile message page ({len(previews)} views)   median "
                  f"{mid:7.1f} ms  max {top:7.1f} ms")  # fmt: skip
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
