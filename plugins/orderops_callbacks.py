"""Deadline callback of the orderops DAGs; it runs in the triggerer, which imports it from plugins/."""

from __future__ import annotations

import asyncio


async def run_deadline_missed(context: dict | None = None, **kwargs) -> None:
    """A pipeline run is still not finished at its deadline: alert (log, warehouse, Slack, e-mail)."""
    from include.airflow.glue import warehouse_url
    from include.report.notify import alert_from_context, notify

    alert = alert_from_context("deadline_missed", {**(context or {}), "detail": kwargs.get("detail")})
    await asyncio.to_thread(notify, alert, warehouse_url(kwargs.get("warehouse_conn", "orderops_warehouse")))
