"""Reference ids and reservation ids: well-formed, and never repeated by the
worker processes forked from one parent (each must draw from its own state)."""

from __future__ import annotations

import os

from relaywarden.refs import REF_PATTERN, new_ref, unique_id


def test_refs_are_well_formed_and_do_not_repeat() -> None:
    refs = [new_ref() for _ in range(20_000)]
    assert all(REF_PATTERN.match(r) for r in refs)
    assert len(set(refs)) == len(refs)
    ids = {unique_id() for _ in range(20_000)}
    assert len(ids) == 20_000 and all(len(i) == 32 for i in ids)


def test_forked_workers_draw_different_ids() -> None:
    """`[milter] workers` forks after the parent has run: a child that inherited
    the parent's generator state unchanged would hand out the parent's next ids."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.write(write, f"{new_ref()} {unique_id()}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child_ref, child_id = pipe.read().split()
    assert (child_ref, child_id) != (new_ref(), unique_id())
