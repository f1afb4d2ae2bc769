"""State shared by all relays, in Redis: blocks and the decision event stream.

Every call is bounded by the client's socket timeout; every Redis failure leaves
here as a StoreError so the engine can apply the policy's fail mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol, cast

import redis
import redis.cluster
import redis.sentinel

from relaywarden import fastjson, pipeline
from relaywarden.breaker import Breaker, connection_class
from relaywarden.errors import StoreError
from relaywarden.identity import Sender
from relaywarden.keys import Keys
from relaywarden.message import Message
from relaywarden.redisurl import (
    CLUSTER_SCHEME,
    SENTINEL_SCHEME,
    parse_cluster_url,
    parse_sentinel_url,
)
from relaywarden.subjects import SCOPE_KINDS, SCOPED, Subject, parse_subject
from relaywarden.verdict import Verdict


@dataclass(frozen=True)
class BlockRecord:
    subject: str
    action: str
    reason: str
    set_by: str
    since: float
    until: float | None  # None: until lifted by hand

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now

    @property
    def covers(self) -> str:
        """Whose mail the block applies to: "relay-wide", or the customer (VPS) a
        scoped `sender:` block is limited to (`customer:ID/sender:ADDRESS`)."""
        head, sep, _ = self.subject.partition(SCOPED)
        return head if sep and head.partition(":")[0] in SCOPE_KINDS else "relay-wide"


class Store(Protocol):
    def blocks_for(self, subjects: list[Subject]) -> list[BlockRecord]: ...
    def finish(self, outcome: Outcome, earlier: Sequence[dict[str, Any]] = ()) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """A transaction's end, as the store records it: what was decided about what."""

    message: Message
    sender: Sender
    verdict: Verdict
    event: dict[str, Any]  # the decision log record


# Work that must happen when a message is decided (commit counters, index a
# quarantined message...) registers here and is queued on one pipeline, so the
# end of a message costs one Redis round trip however many features record it.
FinishHook = Callable[["RedisStore", "redis.client.Pipeline", Outcome], None]
# Work for a transaction that ends with no final decision (aborted, every recipient
# refused, connection closed): e.g. giving a rate-limit reservation back. Queued on
# the pipeline that records its recipient decisions: still one round trip.
AbandonHook = Callable[["RedisStore", "redis.client.Pipeline", Message], None]

# Message.notes key: the replies of the end-of-message pipeline, for hooks whose
# command's answer may still move the verdict (content/campaigns.py).
FINISH_RESULTS = "finish.results"
# Message.notes key: work a hook leaves for after its pipeline has run (`after_recording`).
AFTER_RECORDING = "store.after"


def after_recording(message: Message, work: Callable[[], None]) -> None:
    """Run `work` once the pipeline the hooks are queuing on has run: e.g. an
    escalation, whose re-check must see the hit that very pipeline counts."""
    message.notes.setdefault(AFTER_RECORDING, []).append(work)


def _run_after(message: Message) -> None:
    for work in message.notes.pop(AFTER_RECORDING, []):
        work()


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    try:
        yield
    # redis-py's cluster client raises RedisClusterException (not a RedisError) when
    # no node answers or a slot is not covered: the same fail mode applies.
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StoreError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


def _noscript(result: object) -> bool:
    return isinstance(result, redis.exceptions.NoScriptError) or (
        isinstance(result, redis.exceptions.ResponseError) and str(result).startswith("NOSCRIPT")
    )


def _queued(pipe: redis.client.Pipeline) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(args, options) of each command queued on a pipeline, either kind."""
    if isinstance(pipe, redis.cluster.ClusterPipeline):
        queue = pipe._execution_strategy.command_queue  # no public accessor
        return [(tuple(c.args), dict(c.options)) for c in queue]
    return [(tuple(args), dict(options)) for args, options in pipe.command_stack]


def connect(url: str, timeout: float, breaker: Breaker | None = None) -> redis.Redis:
    """One client (and pool) per process, shared by all milter threads. With a
    breaker, a dead Redis (or a Sentinel's master that does not answer) fails fast
    instead of costing a timeout per call.

    `redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]` asks the Sentinels
    for SERVICE's master (redis-py's own Sentinel client): after a failover the
    next connection goes to the new master, and meanwhile `[redis] on_error` applies.

    `redis+cluster://HOST:PORT[,HOST:PORT...]` (seed nodes) is redis-py's own
    RedisCluster: it learns the slot map from the seeds and routes every command
    and script by its keys' hash slot (a pipeline: one batch per node), following
    MOVED/ASK after a resharding or failover. It offers the commands the store
    uses under the same names, so it is handed on as the one client type the
    call sites know; `is_cluster` tells the few that must behave differently.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "max_connections": 256,
    }
    if breaker is not None:
        options["connection_class"] = connection_class(url, breaker)
    if url.startswith(SENTINEL_SCHEME):
        nodes, service, db = parse_sentinel_url(url)
        # redis-py's Sentinel client is untyped; master_for returns a redis.Redis.
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            nodes, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        master: redis.Redis = sentinel.master_for(service, db=db, **options)  # type: ignore[no-untyped-call]
        return master
    if url.startswith(CLUSTER_SCHEME):
        nodes, username, password = parse_cluster_url(url)
        seeds = [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
        options.pop("health_check_interval")  # not a RedisCluster option
        # A url (the first seed) makes redis-py build each node's pool from these
        # options, connection_class (the breaker's) included; the other seeds follow.
        host, port = nodes[0]

        def build() -> redis.cluster.RedisCluster:
            return redis.cluster.RedisCluster(
                url=f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}",
                startup_nodes=seeds,
                username=username,
                password=password,
                **options,
            )

        return cast(redis.Redis, LazyCluster(build))
    return redis.Redis.from_url(url, **options)


class LazyCluster:
    """redis-py's RedisCluster, built at first use. Its constructor reads the slot
    map from the seeds and raises if none answers: built lazily (and again at the
    next call after a failure), a relay starts while the cluster is down and
    applies its fail mode, as with a plain Redis client, which connects lazily."""

    def __init__(self, build: Callable[[], redis.cluster.RedisCluster]) -> None:
        self._build = build
        self._client: redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def cluster(self) -> redis.cluster.RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._build()
                    except redis.exceptions.RedisClusterException as exc:
                        raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)


def is_cluster(client: object) -> bool:
    return isinstance(client, LazyCluster | redis.cluster.RedisCluster)


class RedisStore:
    finish_hooks: ClassVar[list[FinishHook]] = []  # features register at import
    abandon_hooks: ClassVar[list[AbandonHook]] = []
    # Load the Lua scripts into a Redis that lacks them (restart, failover to a
    # replica that never saw SCRIPT LOAD): registered by limits/scripts.py.
    script_loaders: ClassVar[list[Callable[[redis.Redis], None]]] = []

    def __init__(self, client: redis.Redis, prefix: str = "rw", events_maxlen: int = 100_000):
        self.client = client
        self.keys = Keys(prefix)
        self.events_maxlen = events_maxlen

    # -- blocks ---------------------------------------------------------
    def blocks_for(self, subjects: list[Subject]) -> list[BlockRecord]:
        if not subjects:
            return []
        with redis_errors("block lookup"):
            pipe = self.client.pipeline(transaction=False)
            for subject in subjects:
                pipe.hgetall(self.keys.block(subject))
            rows = pipe.execute()
        now = time.time()
        records = [self._record(row) for row in rows if row]
        return [r for r in records if r.active(now)]

    def set_block(self, record: BlockRecord) -> None:
        subject = parse_subject(record.subject)
        key = self.keys.block(subject)
        fields = {k: json.dumps(v) for k, v in asdict(record).items()}
        with redis_errors("block write"):
            # One Redis: record and index in one MULTI. A Cluster keeps them in
            # different slots (no MULTI across slots, and a pipeline's batches to
            # different nodes run in no set order): the record (one slot, its own
            # MULTI), then the index, one after the other.
            cluster = is_cluster(self.client)
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
            if record.until is not None:
                pipe.expireat(key, int(record.until) + 1)
            if cluster:
                pipe.execute()
            pipe.zadd(self.keys.block_index, {record.subject: record.until or 2**40})
            pipe.execute()

    def remove_block(self, subject: Subject) -> bool:
        with redis_errors("block removal"):
            if is_cluster(self.client):
                # Index first, then the record: an unblock racing a block can leave
                # an index entry without a record (listed as nothing, harmless),
                # never a record in force that the listing does not show.
                self.client.zrem(self.keys.block_index, str(subject))
                return bool(self.client.delete(self.keys.block(subject)))
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.keys.block(subject))
            pipe.zrem(self.keys.block_index, str(subject))
            removed, _ = pipe.execute()
        return bool(removed)

    def list_blocks(self) -> list[BlockRecord]:
        now = time.time()
        with redis_errors("block listing"):
            self.client.zremrangebyscore(self.keys.block_index, 0, now)
            members: list[bytes] = self.client.zrange(self.keys.block_index, 0, -1)  # type: ignore[assignment]
            subjects = [m.decode() for m in members]
            pipe = self.client.pipeline(transaction=False)
            for text in subjects:
                pipe.hgetall(self.keys.block(parse_subject(text)))
            rows = pipe.execute()
        return [r for r in (self._record(row) for row in rows if row) if r.active(now)]

    @staticmethod
    def _record(row: dict[bytes, bytes]) -> BlockRecord:
        data = {k.decode(): json.loads(v) for k, v in row.items()}
        return BlockRecord(**data)

    # -- end of a transaction --------------------------------------------
    def finish(self, outcome: Outcome, earlier: Sequence[dict[str, Any]] = ()) -> None:
        """Record a decision: the event stream plus every registered hook, one round trip.

        `earlier` are the transaction's per-recipient decisions, held back so that
        refusing recipients costs no round trip of its own.
        """
        with redis_errors("recording the decision"):
            pipe = self.client.pipeline(transaction=False)
            for event in (*earlier, outcome.event):
                self._add_event(pipe, event)
            for hook in self.finish_hooks:
                hook(self, pipe, outcome)
            results = self._execute(pipe)
            outcome.message.notes[FINISH_RESULTS] = results
            for result in results:
                if isinstance(result, redis.RedisError):
                    raise result
        _run_after(outcome.message)

    def record_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Decision events of a transaction that ended without a final decision."""
        if not events:
            return
        with redis_errors("recording decisions"):
            pipe = self.client.pipeline(transaction=False)
            for event in events:
                self._add_event(pipe, event)
            pipe.execute()

    def abandon(self, message: Message, events: Sequence[dict[str, Any]] = ()) -> None:
        """A transaction ended without a final decision: its recipient decisions and
        every abandon hook (reservations given back), one round trip, none if idle."""
        with redis_errors("ending a transaction"):
            pipe = self.client.pipeline(transaction=False)
            for event in events:
                self._add_event(pipe, event)
            for hook in self.abandon_hooks:
                hook(self, pipe, message)
            if len(pipe):
                for result in self._execute(pipe):
                    if isinstance(result, redis.RedisError):
                        raise result
        _run_after(message)

    def _execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Run a recording pipeline; replies in order, errors as values. Scripts Redis
        no longer knows (NOSCRIPT, after a restart or a failover) are loaded and just
        those commands run again: a decision answered 250 is still counted, and
        nothing else runs twice."""
        stack = _queued(pipe)
        results: list[Any] = pipeline.execute(pipe)
        missing = [n for n, result in enumerate(results) if _noscript(result)]
        if missing:
            for load in self.script_loaders:
                load(self.client)
            again = self.client.pipeline(transaction=False)
            for n in missing:
                args, options = stack[n]
                again.execute_command(*args, **options)  # type: ignore[no-untyped-call]
            for n, result in zip(missing, again.execute(raise_on_error=False), strict=True):
                results[n] = result
        return results

    def _add_event(self, pipe: redis.client.Pipeline, event: dict[str, Any]) -> None:
        pipe.xadd(
            self.keys.events,
            {"json": fastjson.dumps(event)},
            maxlen=self.events_maxlen,
            approximate=True,
        )

    def recent_events(self, count: int = 100) -> list[dict[str, Any]]:
        with redis_errors("event read"):
            rows: list[tuple[bytes, dict[bytes, bytes]]] = self.client.xrevrange(  # type: ignore[assignment]
                self.keys.events, count=count
            )
        return [json.loads(fields[b"json"]) for _, fields in rows]
