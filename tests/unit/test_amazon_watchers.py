"""The triggerer's Amazon queue watchers long-poll side by side: each poll holds a thread for up to
its wait, so on the event loop's default executor (cores + 4 threads) 200 shops' queues would be
polled a few at a time, each every few minutes."""

from __future__ import annotations

import asyncio
import threading

import pytest

WATCHERS = 40  # more than the default executor's threads on any machine (it holds at most 32)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_forty_watchers_poll_their_queues_at_once(monkeypatch):
    import orderops_triggers
    from orderops_triggers import AmazonNotificationsTrigger

    monkeypatch.setattr(orderops_triggers, "_pollers", {})
    inside = threading.Barrier(WATCHERS, timeout=60)  # broken unless every watcher is polling at once

    class Queue:
        class client:
            @staticmethod
            def close() -> None:
                pass

        def drain(self, shop, inbox, now, wait_seconds) -> int:
            inside.wait()  # a long poll: the thread waits here
            return 1

    monkeypatch.setattr(AmazonNotificationsTrigger, "_open", lambda self: (None, Queue()))
    runs = [AmazonNotificationsTrigger(f"shop-{i}", "q", "amazon", "warehouse").run() for i in range(WATCHERS)]
    fired = await asyncio.wait_for(asyncio.gather(*(anext(run) for run in runs)), timeout=120)
    assert {e.payload["shop"] for e in fired} == {f"shop-{i}" for i in range(WATCHERS)}
    assert not inside.broken


def test_the_pollers_pool_size_is_a_setting_refused_with_its_name(monkeypatch):
    import orderops_triggers

    from include.run.runconfig import RunConfigError

    monkeypatch.setattr(orderops_triggers, "_pollers", {})
    monkeypatch.setenv(orderops_triggers.WATCHER_THREADS_ENV, "0")
    with pytest.raises(RunConfigError, match="ORDEROPS_AMAZON_WATCHER_THREADS"):
        orderops_triggers.pollers()
    monkeypatch.setenv(orderops_triggers.WATCHER_THREADS_ENV, "300")
    assert orderops_triggers.pollers()._max_workers == 300
    orderops_triggers.pollers().shutdown()
