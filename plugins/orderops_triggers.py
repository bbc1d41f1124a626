"""Triggers of the orderops DAGs that run in the triggerer (which imports them from plugins/).

`DoorbellTrigger` listens to a shop's Redis doorbell (include/events/platform_events.py `ring`) for
the shop's event DAG: at the first ring it waits out the burst (`debounce_seconds`, taking the rings
that follow) and fires once, so the wait costs the triggerer a timer, not a worker slot.
`AmazonNotificationsTrigger` watches a shop's FULFILLMENT_ORDER_STATUS queue for the DAG's event
asset: it long-polls the queue, keeps each notification in the shop's event inbox, and fires when
one that starts a run waits there (include/events/receiver.py reads, include/events/platform_events.py verifies).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

# The watchers' long polls each hold a thread for up to `wait_seconds`: on the event loop's default
# executor (a few threads: cores + 4) 200 shops' queues would each be polled every few minutes. Their
# own pool, one thread a watcher up to ORDEROPS_AMAZON_WATCHER_THREADS (256), waits on them all at once.
WATCHER_THREADS_ENV = "ORDEROPS_AMAZON_WATCHER_THREADS"
_pollers: dict[str, ThreadPoolExecutor] = {}
_pollers_lock = threading.Lock()


def pollers() -> ThreadPoolExecutor:
    from include.run.shops import count_setting

    with _pollers_lock:
        if "pool" not in _pollers:
            size = count_setting(WATCHER_THREADS_ENV, 256, 4096)
            _pollers["pool"] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="amazon-queue")
        return _pollers["pool"]


class AmazonNotificationsTrigger(BaseEventTrigger):
    def __init__(self, shop: str, queue_url: str, amazon_conn_id: str, warehouse_conn_id: str, wait_seconds: int = 20):
        super().__init__()
        self.shop, self.queue_url, self.wait_seconds = shop, queue_url, wait_seconds
        self.amazon_conn_id, self.warehouse_conn_id = amazon_conn_id, warehouse_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "orderops_triggers.AmazonNotificationsTrigger",
            {
                "shop": self.shop,
                "queue_url": self.queue_url,
                "amazon_conn_id": self.amazon_conn_id,
                "warehouse_conn_id": self.warehouse_conn_id,
                "wait_seconds": self.wait_seconds,
            },
        )

    def _open(self):
        from include.airflow.glue import shared_warehouse
        from include.events.platform_events import EventInbox
        from include.events.receiver import AmazonQueue, AwsCredentials
        from orderops_provider.hooks import read_connection

        extra = read_connection(self.amazon_conn_id, ("aws_secret_access_key",)).extra
        credentials = None
        if extra.get("aws_access_key_id"):
            credentials = AwsCredentials(
                extra["aws_access_key_id"], extra.get("aws_secret_access_key", ""), extra.get("aws_region", "us-east-1")
            )
        # every watcher of this triggerer shares one bounded pool (include/airflow/glue.py)
        wh = shared_warehouse(self.warehouse_conn_id)
        return (
            EventInbox(wh),
            AmazonQueue(self.queue_url, seller_id=extra.get("seller_id"), credentials=credentials),
        )

    async def run(self):
        inbox, queue = await asyncio.to_thread(self._open)
        try:
            while True:
                try:
                    waking = await asyncio.get_running_loop().run_in_executor(
                        pollers(), queue.drain, self.shop, inbox, None, self.wait_seconds
                    )
                except Exception as exc:  # noqa: BLE001 - a queue outage is waited out; the schedule covers it
                    self.log.warning("amazon notification queue of shop %s: %s", self.shop, exc)
                    await asyncio.sleep(30)
                    continue
                if waking:  # fire for what is new: a run already queued takes the rest
                    yield TriggerEvent({"shop": self.shop, "source": "amazon_mcf"})
                    return
        finally:
            queue.client.close()


class DoorbellTrigger(BaseEventTrigger):
    def __init__(self, shop: str, redis_conn_id: str, debounce_seconds: float, poll_seconds: float = 1.0):
        super().__init__()
        self.shop, self.redis_conn_id = shop, redis_conn_id
        self.debounce_seconds, self.poll_seconds = debounce_seconds, poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "orderops_triggers.DoorbellTrigger",
            {
                "shop": self.shop,
                "redis_conn_id": self.redis_conn_id,
                "debounce_seconds": self.debounce_seconds,
                "poll_seconds": self.poll_seconds,
            },
        )

    def _client(self):
        """An asyncio client of the Redis the Redis provider reads from the connection (host, port,
        db, credentials, ssl settings), the one the receiver rings: a blocking read per shop would
        take a thread of the triggerer's few for each of hundreds of shops."""
        import redis
        import redis.asyncio as aioredis
        from airflow.providers.redis.hooks.redis import RedisHook

        pool = RedisHook(redis_conn_id=self.redis_conn_id).get_conn().connection_pool
        given = pool.connection_kwargs
        keep = ("host", "port", "db", "username", "password") + tuple(k for k in given if k.startswith("ssl_"))
        return aioredis.Redis(
            **{k: given[k] for k in keep if given.get(k) is not None},
            ssl=issubclass(pool.connection_class, redis.SSLConnection),
            socket_connect_timeout=10,
        )

    async def run(self):
        from include.events.platform_events import channel

        client = await asyncio.to_thread(self._client)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel(self.shop, int(client.connection_pool.connection_kwargs.get("db") or 0)))
            loop = asyncio.get_running_loop()
            first: float | None = None
            while True:
                message = await pubsub.get_message(timeout=self.poll_seconds)
                if message is not None and first is None:
                    first = loop.time()
                if first is not None and loop.time() - first >= self.debounce_seconds:
                    yield TriggerEvent({"shop": self.shop, "source": "doorbell"})
                    return
        finally:
            await pubsub.aclose()
            await client.aclose()
