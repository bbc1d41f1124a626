"""Alerts reach the log, the warehouse, a Slack webhook and an SMTP server (real loopback servers)."""

from __future__ import annotations

import email
import html
import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from include.report.notify import Alert, alert_from_context, notify
from include.store.warehouse import Warehouse, pipeline_breaches

ALERT = Alert(
    kind="deadline_missed",
    dag_id="orderops_sla",
    run_id="scheduled__2026-11-20T14:30:00+00:00",
    detail="orderops_sla run not finished 25 min after queueing",
)


@pytest.fixture
def webhook():
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX", received
    server.shutdown()


@pytest.fixture
def smtp_server():
    """A minimal SMTP receiver: enough of the protocol for one message per connection."""
    messages = []

    class Session(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"220 localhost ESMTP\r\n")
            data, in_data = [], False
            for raw in self.rfile:
                line = raw.decode().rstrip("\r\n")
                if in_data:
                    if line == ".":
                        messages.append("\n".join(data))
                        in_data = False
                        self.wfile.write(b"250 queued\r\n")
                    else:
                        data.append(line)
                    continue
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.wfile.write(b"250 localhost\r\n")
                elif verb == "DATA":
                    in_data = True
                    self.wfile.write(b"354 go ahead\r\n")
                elif verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], messages
    server.shutdown()


def test_alert_is_logged_and_recorded_without_channels(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="include.report.notify")
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    assert notify(ALERT, url) == ["log", "warehouse"]
    assert "deadline missed: orderops_sla" in caplog.text
    wh = Warehouse(url)
    with wh.engine.connect() as conn:
        rows = conn.execute(sa.select(pipeline_breaches.c.kind, pipeline_breaches.c.run_id)).all()
    assert rows == [("deadline_missed", ALERT.run_id)]


def test_alert_goes_to_slack_and_email_when_configured(tmp_path, monkeypatch, webhook, smtp_server):
    hook_url, posts = webhook
    port, mails = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_SLACK", json.dumps({"conn_type": "http", "password": hook_url}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDEROPS_SMTP",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {
                    "to": "ops@example.com",
                    "from_email": "orderops@example.com",
                    "disable_ssl": True,
                    "disable_tls": True,
                },
            }
        ),
    )
    reached = notify(ALERT, f"sqlite:///{tmp_path / 'wh.db'}")
    assert reached == ["log", "warehouse", "slack", "email"]
    assert posts and "deadline missed" in posts[0]["text"] and ALERT.detail in posts[0]["text"]
    mail = email.message_from_string(mails[0])
    assert " ".join(mail["Subject"].split()).startswith("[orderops] deadline missed: orderops_sla")
    assert mail["To"] == "ops@example.com" and mail["From"] == "orderops@example.com"
    body = next(part for part in mail.walk() if part.get_content_type() == "text/html")
    assert html.escape(ALERT.detail) in body.get_payload(decode=True).decode()


def test_a_broken_channel_does_not_stop_the_others(tmp_path, monkeypatch, smtp_server):
    port, mails = smtp_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDEROPS_SLACK", json.dumps({"conn_type": "http", "password": "http://127.0.0.1:9/nothing"})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDEROPS_SMTP",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"to": "ops@example.com", "disable_ssl": True, "disable_tls": True},
            }
        ),
    )
    assert notify(ALERT, None) == ["log", "email"]
    assert len(mails) == 1


def test_alert_from_contexts():
    class TI:
        task_id, try_number, map_index = "post_tracking", 3, 2

    class Run:
        dag_id, run_id = "orderops_sla", "manual__x"

    failed = alert_from_context("task_failed", {"ti": TI(), "dag_run": Run(), "exception": ValueError("boom")})
    assert failed.detail == "task post_tracking (try 3, map index 2) failed: boom" and failed.run_id == "manual__x"
    late = alert_from_context(
        "deadline_missed", {"dag_run": {"dag_id": "orderops_sla_shop_b", "dag_run_id": "r9"}, "detail": "not finished"}
    )
    assert (late.dag_id, late.run_id, late.detail) == ("orderops_sla_shop_b", "r9", "not finished")
