"""GroupCommit: items submitted while a batch is being written go together in the next
one, each submitter gets its own outcome, and a failing batch answers all of its items."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from parley.inbox.group_commit import GroupCommit


async def settle() -> None:
    """Let every runnable task run until all wait."""
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: BaseException | None = None
        self.fail_on = -1  # the batch with this item fails

    async def process(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_with is not None and self.fail_on in items:
            raise self.fail_with
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_item_is_processed_at_once() -> None:
    r = Recorder()
    commit = GroupCommit(r.process)
    assert await commit.submit(4) == 40
    assert r.batches == [[4]]


async def test_items_arriving_during_a_batch_go_together() -> None:
    r = Recorder()
    r.gate.clear()
    commit = GroupCommit(r.process, max_in_flight=1)
    first = asyncio.create_task(commit.submit(0))
    await settle()
    waiting = [asyncio.create_task(commit.submit(i)) for i in (2, 4, 6, 8)]
    await settle()
    assert r.batches == [[0]]  # the others wait for the batch in flight
    r.gate.set()
    assert await first == 0
    assert [await t for t in waiting] == [20, 40, 60, 80]
    assert r.batches == [[0], [2, 4, 6, 8]]
    assert (commit.batches, commit.largest) == (2, 4)


async def test_batches_are_capped_and_run_side_by_side() -> None:
    r = Recorder()
    r.gate.clear()
    commit = GroupCommit(r.process, max_size=3, max_in_flight=2)
    tasks = [asyncio.create_task(commit.submit(i * 2)) for i in range(8)]
    await settle()
    # Nothing waits for a batch to fill: the first two items start one each, and the
    # rest wait for a free slot.
    assert r.batches == [[0], [2]]
    r.gate.set()
    assert [await t for t in tasks] == [i * 20 for i in range(8)]
    assert r.batches == [[0], [2], [4, 6, 8], [10, 12, 14]]


async def test_a_second_batch_waits_until_enough_items_wait() -> None:
    r = Recorder()
    r.gate.clear()
    commit = GroupCommit(r.process, max_in_flight=2, overlap_at=3)
    first = asyncio.create_task(commit.submit(0))
    await settle()
    two = [asyncio.create_task(commit.submit(i)) for i in (2, 4)]
    await settle()
    assert r.batches == [[0]]  # two waiting: not worth a batch of their own yet
    three = [asyncio.create_task(commit.submit(i)) for i in (6, 8)]
    await settle()
    # The third waiting item starts a second batch beside the first; the fourth waits.
    assert r.batches == [[0], [2, 4, 6]]
    r.gate.set()
    assert [await t for t in [first, *two, *three]] == [0, 20, 40, 60, 80]
    assert r.batches == [[0], [2, 4, 6], [8]]
    with pytest.raises(ValueError):
        GroupCommit(r.process, overlap_at=0)


async def test_each_submitter_gets_its_own_outcome() -> None:
    r = Recorder()
    r.gate.clear()
    commit = GroupCommit(r.process, max_in_flight=1)
    tasks = [asyncio.create_task(commit.submit(i)) for i in range(4)]
    r.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert [str(e) for e in results[1::2]] == ["odd 1", "odd 3"]


async def test_a_failed_batch_answers_everyone_and_the_next_one_runs() -> None:
    r = Recorder()
    r.gate.clear()
    commit = GroupCommit(r.process, max_size=2, max_in_flight=1)
    first = asyncio.create_task(commit.submit(0))
    await settle()
    r.fail_with, r.fail_on = RuntimeError("database went away"), 2
    doomed = [asyncio.create_task(commit.submit(i)) for i in (2, 4)]
    later = asyncio.create_task(commit.submit(6))
    await settle()
    r.gate.set()
    assert await first == 0  # the failure is the second batch's
    for task in doomed:
        with pytest.raises(RuntimeError, match="database went away"):
            await task
    assert await later == 60
    assert r.batches == [[0], [2, 4], [6]]
    await commit.drain()


async def test_a_wrong_number_of_outcomes_is_an_error_for_everyone() -> None:
    async def short(items: Sequence[int]) -> list[int | BaseException]:
        return [1]

    commit = GroupCommit(short, max_in_flight=1)
    results = await asyncio.gather(
        commit.submit(1), commit.submit(2), commit.submit(3), return_exceptions=True
    )
    # The first item is a batch of its own (answered 1); the next two go together and
    # get one outcome between them: an error for both, not a guess.
    assert results[0] == 1
    assert [type(r) for r in results[1:]] == [RuntimeError, RuntimeError]


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Recorder().process, max_size=0)  # type: ignore[arg-type]
