"""The devstack itself, against real redis-server, Postfix and aiosmtpd (no mocks)."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.procs import pid_alive, port_is_open
from relaywarden.devstack.redis import RedisServer
from relaywarden.devstack.sink import Sink, SinkMessage
from relaywarden.devstack.smtpclient import Session, send, xclient_addr, xtext

LOOPBACK = "127.0.0.1"


def message(subject: str, body: str = "hello\r\n") -> bytes:
    return (
        f"From: bob@vps.example\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n\r\n{body}"
    ).encode()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


@pytest.fixture
def postfix(sink: Sink) -> Iterator[PostfixInstance]:
    # No milter: this checks the plumbing, not RelayWarden.
    instance = PostfixInstance(sink.port, milter=None)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.mark.timeout(60)
def test_redis_answers_ping_and_restart_keeps_port(tmp_path: Path) -> None:
    with RedisServer() as server:
        url = server.start(tmp_path / "redis")
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("k", "v")
        first_pid = server.proc.pid if server.proc else -1

        assert server.restart() == url
        assert server.proc is not None and server.proc.pid != first_pid
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.get("k") is None  # no persistence: a restart starts empty
    assert not pid_alive(first_pid)
    assert server.port is not None and not port_is_open(LOOPBACK, server.port)


@pytest.mark.timeout(60)
def test_message_with_xclient_reaches_sink(postfix: PostfixInstance, sink: Sink) -> None:
    result = send(
        LOOPBACK,
        postfix.smtp_port,
        "bob@vps.example",
        ["rcpt@example.org", "other@example.net"],
        message("first"),
        xclient={"ADDR": "203.0.113.7", "LOGIN": "alice"},
    )
    assert result.accepted, result
    assert result.code == 250 and result.enhanced == "2.0.0"
    assert result.queue_id

    [got] = sink.wait_for(lambda m: m.subject == "first", timeout=30)
    assert got.mail_from == "bob@vps.example"
    # qmgr groups recipients by destination, so the order may change.
    assert sorted(got.rcpt_tos) == ["other@example.net", "rcpt@example.org"]
    received = got.headers("Received")[0]
    assert "[203.0.113.7]" in received  # the XCLIENT address, not 127.0.0.1
    assert result.queue_id in received
    assert "sasl_username=alice" in postfix.log_text()


@pytest.mark.timeout(60)
def test_second_message_over_one_session_has_own_queue_id(
    postfix: PostfixInstance, sink: Sink
) -> None:
    with Session(LOOPBACK, postfix.smtp_port, xclient={"ADDR": "203.0.113.7"}) as session:
        one = session.send("bob@vps.example", ["a@example.org"], message("one"))
        two = session.send("bob@vps.example", ["b@example.org"], message("two"))
    assert one.accepted and two.accepted
    assert one.queue_id and two.queue_id and one.queue_id != two.queue_id

    def by_subject(subject: str) -> SinkMessage:
        return sink.wait_for(lambda m: m.subject == subject, timeout=30)[0]

    assert two.queue_id in by_subject("two").headers("Received")[0]
    assert one.queue_id in by_subject("one").headers("Received")[0]


@pytest.mark.timeout(60)
def test_ipv6_null_sender_and_smtputf8(postfix: PostfixInstance, sink: Sink) -> None:
    bounce = send(
        LOOPBACK,
        postfix.smtp_port,
        "",
        ["rcpt@example.org"],
        message("null sender"),
        xclient={"ADDR": "2001:db8::1"},
    )
    assert bounce.accepted, bounce
    utf8 = send(
        LOOPBACK,
        postfix.smtp_port,
        "josé@vps.example",
        ["ü@example.org"],
        message("utf8", "caf\u00e9\r\n"),
        xclient={"ADDR": "203.0.113.7"},
    )
    assert utf8.accepted, utf8

    [got] = sink.wait_for(lambda m: m.subject == "null sender", timeout=30)
    assert got.mail_from == ""  # the null sender
    assert "[IPv6:2001:db8::1]" in got.headers("Received")[0]
    [got] = sink.wait_for(lambda m: m.subject == "utf8", timeout=30)
    assert got.smtputf8 and got.rcpt_tos == ("ü@example.org",)
    assert "café".encode() in got.raw


@pytest.mark.timeout(60)
def test_rejections_are_results_not_exceptions(postfix: PostfixInstance) -> None:
    # Refuse two senders, one at MAIL and one at DATA, via inline access maps
    # (smtpd_delay_reject=no: otherwise sender restrictions act at RCPT).
    postfix.main_cf_set("smtpd_delay_reject", "no")
    postfix.main_cf_set(
        "smtpd_sender_restrictions",
        "check_sender_access inline:{ {no-mail@vps.example = REJECT not you} }",
    )
    postfix.main_cf_set(
        "smtpd_data_restrictions",
        "check_sender_access inline:{ {no-data@vps.example = REJECT no data} }",
    )
    postfix.reload()
    with Session(LOOPBACK, postfix.smtp_port, xclient={"ADDR": "203.0.113.7"}) as session:
        at_mail = session.send("no-mail@vps.example", ["r@example.org"], message("m"))
        at_rcpt = session.send("bob@vps.example", [""], message("r"))
        mixed = session.send("bob@vps.example", ["", "r@example.org"], message("mixed"))
        at_data = session.send("no-data@vps.example", ["r@example.org"], message("d"))
        after = session.send("bob@vps.example", ["r@example.org"], message("after"))

    assert (at_mail.stage, at_mail.code, at_mail.enhanced) == ("mail", 554, "5.7.1")
    assert "not you" in at_mail.text
    assert (at_rcpt.stage, at_rcpt.code) == ("rcpt", 501)
    assert at_rcpt.per_rcpt[""][0] == 501
    assert mixed.accepted and mixed.per_rcpt[""][0] == 501
    assert mixed.per_rcpt["r@example.org"][0] == 250
    assert (at_data.stage, at_data.code) == ("data", 554)
    assert after.accepted, "the session must stay usable after rejections"


@pytest.mark.timeout(60)
def test_hold_and_release(sink: Sink) -> None:
    # defer_transports keeps mail queued until `postqueue -f`, like sendmail -q.
    with PostfixInstance(sink.port, extra_main_cf={"defer_transports": "smtp relay"}) as pf:
        result = send(LOOPBACK, pf.smtp_port, "bob@vps.example", ["r@example.org"], message("hold"))
        assert result.accepted and result.queue_id
        qid = result.queue_id
        pf.wait_queue(
            lambda q: any(e["queue_id"] == qid and e["queue_name"] == "deferred" for e in q),
            timeout=30,
            what=f"{qid} in the deferred queue",
        )

        pf.postsuper("-h", qid)
        [held] = pf.hold_queue()
        assert held["queue_id"] == qid
        assert held["sender"] == "bob@vps.example"
        assert [r["address"] for r in held["recipients"]] == ["r@example.org"]
        assert "Subject: hold" in pf.postcat(qid, "-h")

        pf.main_cf_set("defer_transports", "")
        pf.reload()
        pf.postsuper("-H", qid)
        pf.flush()
        [got] = sink.wait_for(lambda m: m.subject == "hold", timeout=30)
        assert qid in got.headers("Received")[0]
        pf.wait_queue_empty(timeout=30)


@pytest.mark.timeout(60)
def test_stop_leaves_no_process_of_the_instance(sink: Sink) -> None:
    pf = PostfixInstance(sink.port, keep_dir=True)
    pf.start()
    assert pf.proc is not None
    master = pf.proc.pid
    # Make smtpd, cleanup and smtp run, so there are children to clean up.
    send(LOOPBACK, pf.smtp_port, "bob@vps.example", ["r@example.org"], message("last"))
    sink.wait_for(1, timeout=30)
    assert len(pf.instance_pids()) > 1
    pf.stop()
    assert not pid_alive(master)
    assert pf.instance_pids(master) == []
    assert not port_is_open(LOOPBACK, pf.smtp_port)
    assert "configuration " + str(pf.config_dir) in pf.log_text()
    shutil.rmtree(pf.base_dir)


@pytest.mark.timeout(120)
def test_30mb_message_and_100kb_header(postfix: PostfixInstance, sink: Sink) -> None:
    body = base64.encodebytes(os.urandom(22 * 1024 * 1024)).replace(b"\n", b"\r\n")
    big = b"Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    assert len(big) > 30_000_000
    folded = b"\r\n ".join([b"x" * 70] * 1500)  # ~106 KB in one folded header
    tall = b"Subject: tall\r\nX-Tall: " + folded + b"\r\n\r\nbody\r\n"
    client = {"ADDR": "203.0.113.7"}
    port = postfix.smtp_port
    assert send(LOOPBACK, port, "b@vps.example", ["r@example.org"], big, xclient=client).accepted
    assert send(LOOPBACK, port, "b@vps.example", ["r@example.org"], tall, xclient=client).accepted

    [got] = sink.wait_for(lambda m: m.subject == "big", timeout=60)
    assert got.raw.endswith(body)
    [got] = sink.wait_for(lambda m: m.subject == "tall", timeout=30)
    assert len(got.header("X-Tall") or "") > 100_000


def test_xtext_and_ipv6_addr() -> None:
    assert xtext("alice") == "alice"
    assert xtext("a b+c=d") == "a+20b+2Bc+3Dd"
    assert xtext("é") == "+C3+A9"
    assert xclient_addr("2001:db8::1") == "IPV6:2001:db8::1"
    assert xclient_addr("IPV6:::1") == "IPV6:::1"
    assert xclient_addr("192.0.2.1") == "192.0.2.1"
