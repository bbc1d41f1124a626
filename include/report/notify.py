"""Alerts for the data team: a run past its deadline, a failed task.

Every alert is logged and recorded in the warehouse (`pipeline_breaches`, shown by the report);
it also goes to Slack when a connection `orderops_slack` exists (conn type http, sent by the HTTP
provider's hook: an incoming-webhook URL in its host or password) and by e-mail when `orderops_smtp`
exists (conn type smtp, sent by the SMTP provider's hook; extra `to`). A channel that fails is
logged, never raised: alerting must not fail a run.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from include.store.warehouse import Warehouse, pipeline_breaches, utcnow

log = logging.getLogger(__name__)
SLACK_CONN = "orderops_slack"
SMTP_CONN = "orderops_smtp"


@dataclass(frozen=True)
class Alert:
    kind: str  # deadline_missed | task_failed | warehouse_uploads_held
    dag_id: str
    run_id: str | None
    detail: str

    @property
    def subject(self) -> str:
        return f"[orderops] {self.kind.replace('_', ' ')}: {self.dag_id} {self.run_id or ''}".strip()


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not configured: that channel is off
        return None


def send_slack(alert: Alert, conn) -> None:
    """POST to the incoming webhook with the HTTP provider's hook (conn type http: the webhook URL
    in host, or in password to keep it out of the UI)."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    url = conn.host if (conn.host or "").startswith("http") else conn.password
    if not url:
        raise ValueError(f"connection {SLACK_CONN}: put the webhook URL in host or password")
    hook = HttpHook(method="POST", http_conn_id=SLACK_CONN)
    session = hook.get_conn()  # the connection's headers, proxies and TLS settings apply
    request = requests.Request("POST", url, json={"text": f"*{alert.subject}*\n{alert.detail}"})
    hook.run_and_check(session, session.prepare_request(request), {"timeout": 10})  # raises unless 2xx


def send_email(alert: Alert, conn) -> None:
    """Send with the SMTP provider's hook: its connection fields apply (`from_email`, `disable_ssl`,
    `disable_tls`, `timeout`, `retry_limit`, login and password); `to` in extra is ours."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    extra = conn.extra_dejson or {}
    if not extra.get("to"):
        raise ValueError(f"connection {SMTP_CONN}: extra.to (recipients) is required")
    with SmtpHook(smtp_conn_id=SMTP_CONN) as smtp:
        smtp.send_email_smtp(
            to=extra["to"],
            subject=alert.subject,
            html_content=f"<pre>{html.escape(alert.detail)}</pre>",
            from_email=extra.get("from_email") or "orderops@localhost",
        )


def notify(alert: Alert, warehouse_url: str | None) -> list[str]:
    """Log, record and send one alert; returns the channels it reached."""
    log.warning("%s: %s", alert.subject, alert.detail)
    reached = ["log"]
    if warehouse_url:
        try:
            wh = Warehouse(warehouse_url)
            wh.migrate()
            with wh.engine.begin() as conn:
                conn.execute(
                    pipeline_breaches.insert().values(
                        dag_id=alert.dag_id,
                        run_id=alert.run_id,
                        kind=alert.kind,
                        detail=alert.detail,
                        recorded_at=utcnow(),
                    )
                )
            wh.dispose()
            reached.append("warehouse")
        except Exception as exc:  # noqa: BLE001 - recording must not hide the alert itself
            log.error("could not record the alert in the warehouse: %s", exc)
    for conn_id, send, name in ((SLACK_CONN, send_slack, "slack"), (SMTP_CONN, send_email, "email")):
        conn = _connection(conn_id)
        if conn is None:
            continue
        try:
            send(alert, conn)
            reached.append(name)
        except Exception as exc:  # noqa: BLE001
            log.error("alert not sent by %s: %s", name, exc)
    return reached


def alert_from_context(kind: str, context: dict[str, Any]) -> Alert:
    """Build an alert from a task failure context or a deadline callback context."""
    dag_run = context.get("dag_run")
    if isinstance(dag_run, dict):  # deadline callbacks receive the run as a dict
        dag_id, run_id = dag_run.get("dag_id"), dag_run.get("dag_run_id") or dag_run.get("run_id")
    else:
        dag_id, run_id = getattr(dag_run, "dag_id", None), getattr(dag_run, "run_id", None)
    ti = context.get("ti") or context.get("task_instance")
    if kind == "task_failed" and ti is not None:
        error = context.get("exception")
        detail = f"task {ti.task_id} (try {ti.try_number}, map index {ti.map_index}) failed: {error}"
    else:
        detail = context.get("detail") or "the run did not finish within its deadline"
    return Alert(kind=kind, dag_id=dag_id or "orderops_sla", run_id=run_id, detail=detail)
