"""Triggers of the orderops DAGs that run in the triggerer (which imports them from plugins/).

`AmazonNotificationsTrigger` watches a shop's FULFILLMENT_ORDER_STATUS queue for the DAG's event
asset: it long-polls the queue, keeps each notification in the shop's event inbox, and fires when
one that starts a run waits there (include/events/receiver.py reads, include/events/platform_events.py verifies).
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


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
                    waking = await asyncio.to_thread(queue.drain, self.shop, inbox, None, self.wait_seconds)
                except Exception as exc:  # noqa: BLE001 - a queue outage is waited out; the schedule covers it
                    self.log.warning("amazon notification queue of shop %s: %s", self.shop, exc)
                    await asyncio.sleep(30)
                    continue
                if waking:  # fire for what is new: a run already queued takes the rest
                    yield TriggerEvent({"shop": self.shop, "source": "amazon_mcf"})
                    return
        finally:
            queue.client.close()
