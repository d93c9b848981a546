"""TtlCache: one read per key in flight, whatever the number of waiters."""

from __future__ import annotations

import asyncio

import pytest

from tollway.cache import TtlCache


async def _run_ready() -> None:
    for _ in range(5):  # the callers, then the read task they started
        await asyncio.sleep(0)


class Source:
    def __init__(self) -> None:
        self.reads = 0
        self.value = "a"
        self.gate = asyncio.Event()
        self.fail = False

    async def load(self, key: str) -> str:
        self.reads += 1
        value = self.value  # what the database held when the read began
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("database away")
        return f"{key}:{value}"


async def test_concurrent_misses_share_one_read() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(source.load, ttl_s=60)
    waiters = [asyncio.create_task(cache.get("p")) for _ in range(50)]
    await _run_ready()
    source.gate.set()
    assert set(await asyncio.gather(*waiters)) == {"p:a"}
    assert source.reads == 1
    assert await cache.get("p") == "p:a"
    assert source.reads == 1


async def test_expired_entry_is_read_again() -> None:
    now = [0.0]
    source = Source()
    source.gate.set()
    cache: TtlCache[str, str] = TtlCache(source.load, ttl_s=1, clock=lambda: now[0])
    assert await cache.get("p") == "p:a"
    source.value = "b"
    now[0] = 0.5
    assert await cache.get("p") == "p:a"
    now[0] = 1.5
    assert await cache.get("p") == "p:b"
    assert source.reads == 2


async def test_forget_during_a_read_keeps_its_value_out() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(source.load, ttl_s=60)
    early = asyncio.create_task(cache.get("p"))
    await _run_ready()
    cache.forget("p")  # e.g. a PUT through this process while the read runs
    source.value = "b"
    late = asyncio.create_task(cache.get("p"))  # a new read, not the detached one
    await _run_ready()
    source.gate.set()
    assert await early == "p:a"  # the old read answers whoever waited for it...
    assert await late == "p:b"
    assert await cache.get("p") == "p:b"  # ...but only the new one was stored
    assert source.reads == 2


async def test_a_failed_read_reaches_every_waiter_and_is_not_stored() -> None:
    source = Source()
    source.fail = True
    cache: TtlCache[str, str] = TtlCache(source.load, ttl_s=60)
    waiters = [asyncio.create_task(cache.get("p")) for _ in range(3)]
    await _run_ready()
    source.gate.set()
    for waiter in waiters:
        with pytest.raises(RuntimeError):
            await waiter
    source.fail = False
    assert await cache.get("p") == "p:a"
    assert source.reads == 2


async def test_a_waiter_cancelled_does_not_cancel_the_read() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(source.load, ttl_s=60)
    first = asyncio.create_task(cache.get("p"))
    second = asyncio.create_task(cache.get("p"))
    await _run_ready()
    first.cancel()
    await _run_ready()
    source.gate.set()
    assert await second == "p:a"
    assert first.cancelled()
    assert source.reads == 1
