"""`make bench-flood`: the webhook receiver under a flood of signed deliveries, measured from outside.

Starts the real receiver app (include/events/receiver.py `create_app`, as the Airflow API server's
plugin builds it: the inbox on a PostgreSQL warehouse, the doorbell on Redis) in its own process under
uvicorn on loopback, then sends DELIVERIES validly signed deliveries (TikTok, Shopify and ShipBob in
turn, each a new event, one in ten a buyer's cancellation request that rings the doorbell) from
CLIENTS concurrent clients as fast as they are answered, while another client polls `/health` every
10 ms. The shop's budget of deliveries a second is lifted above the flood, so every delivery is
verified and kept: the worst case for the server, not the 429s a budget would answer.

Prints and writes bench/results/webhook-flood.json: `/health` latency (p50, p95, max) idle and during
the flood, deliveries a second, the answers by status, what the inbox kept, and the receiver
process's CPU seconds over the flood. The floor: health p95 under 50 ms during the flood.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHOP = "flood"
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DATABASE = "orderops_bench_flood"
REDIS = "redis://127.0.0.1:6379/0"
TIKTOK_KEY, TIKTOK_SECRET, TIKTOK_SHOP = "flood-app-key", "flood-app-secret", "7494000000000000777"
SHOPIFY_SECRET, SHOPIFY_DOMAIN = "shpss_flood_bench", "flood-bench.myshopify.com"
SHIPBOB_SECRET = "whsec_" + "Zmxvb2QtYmVuY2gtc2hpcGJvYi1zZWNyZXQ="[:32]
FLOOR_P95_MS = 50.0
HEALTH_EVERY = 0.01  # seconds between /health polls


# ----------------------------------------------------------------------------- the receiver process
def serve(port: int, warehouse: str, redis_url: str) -> None:
    """The receiver as the API server's plugin builds it, for the one shop, under uvicorn."""
    import uvicorn

    from include.events.platform_events import EventInbox
    from include.events.receiver import ShopSecrets, create_app
    from include.store.warehouse import Warehouse

    wh = Warehouse(warehouse)
    wh.migrate()
    secrets = ShopSecrets(
        TIKTOK_KEY,
        TIKTOK_SECRET,
        SHOPIFY_SECRET,
        SHIPBOB_SECRET,
        None,
        tiktok_shop_id=TIKTOK_SHOP,
        shopify_shop_domain=SHOPIFY_DOMAIN,
    )
    app = create_app(
        lambda shop: secrets if shop == SHOP else None,
        EventInbox(wh),
        lambda shop: redis_url,
        rate_of=lambda shop: 10_000.0,  # lifted above the flood: every delivery is kept
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ----------------------------------------------------------------------------- deliveries
def delivery(n: int) -> tuple[str, bytes, dict]:
    """The n-th delivery: (platform, body, headers), signed as the platform signs it, each a new event."""
    import base64

    now = int(time.time())
    kind = n % 3
    if kind == 0:
        waking = n % 10 == 0
        data = (
            {"order_id": f"5760000{n:011d}", "cancel_id": f"C{n}", "cancel_status": "CANCELLATION_REQUEST_PENDING"}
            if waking
            else {"order_id": f"5760000{n:011d}", "order_status": "AWAITING_SHIPMENT"}
        )
        doc = {
            "type": 11 if waking else 1,
            "tts_notification_id": f"{n:019d}",
            "shop_id": TIKTOK_SHOP,
            "timestamp": now,
            "data": {**data, "update_time": now},
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        signature = hmac.new(TIKTOK_SECRET.encode(), TIKTOK_KEY.encode() + body, hashlib.sha256).hexdigest()
        return "tiktok", body, {"Authorization": signature, "Content-Type": "application/json"}
    if kind == 1:
        body = json.dumps(
            {"id": 6100000000 + n, "name": f"#{n}", "updated_at": datetime.now(timezone.utc).isoformat()}
        ).encode()
        digest = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
        return (
            "shopify",
            body,
            {
                "X-Shopify-Hmac-Sha256": digest,
                "X-Shopify-Topic": "orders/updated",
                "X-Shopify-Shop-Domain": SHOPIFY_DOMAIN,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "Content-Type": "application/json",
            },
        )
    body = json.dumps({"id": 9000000 + n, "status": "Processing", "shipments": []}).encode()
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(now)
    key = base64.b64decode(SHIPBOB_SECRET.removeprefix("whsec_"))
    digest = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return (
        "shipbob",
        body,
        {
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{digest}",
            "shipbob-topic": "order.shipment.delivered",
            "Content-Type": "application/json",
        },
    )


# ----------------------------------------------------------------------------- measuring
def latency(values: list[float]) -> dict:
    """Milliseconds: p50, p95, max and how many."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "count": len(ordered),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll_health(client, stop: threading.Event, out: list[float], errors: Counter) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        try:
            ok = client.get("/health").status_code == 200
        except Exception as exc:  # noqa: BLE001 - counted, the poll goes on
            ok, errors[type(exc).__name__] = False, errors[type(exc).__name__] + 1
        if ok:
            out.append(time.perf_counter() - began)
        else:
            errors["health not 200"] += 1
        time.sleep(max(0.0, HEALTH_EVERY - (time.perf_counter() - began)))


def fresh_database(name: str) -> str:
    """A new, empty PostgreSQL database for the run's warehouse; its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return f"{PG}/{name}"


def kept(warehouse: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(warehouse)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM platform_events WHERE shop = :s"), {"s": SHOP}).scalar()
    finally:
        engine.dispose()


def flood(deliveries: int, clients: int, warehouse: str | None, redis_url: str) -> dict:
    import httpx

    from sandbox.server import bind

    warehouse = warehouse or fresh_database(DATABASE)
    sock = bind(0)
    port = sock.getsockname()[1]
    sock.close()
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.webhook_flood",
            "--serve",
            str(port),
            "--warehouse",
            warehouse,
            "--redis",
            redis_url,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as health:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if health.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if receiver.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the receiver did not start (exit {receiver.poll()})")
                time.sleep(0.2)
            # warm: one delivery of each platform, then the idle latency
            with httpx.Client(base_url=base, timeout=30) as one:
                for n in range(3):
                    platform, body, headers = delivery(deliveries + n)
                    one.post(f"/{SHOP}/{platform}", content=body, headers=headers).raise_for_status()
            idle: list[float] = []
            for _ in range(200):
                began = time.perf_counter()
                health.get("/health")
                idle.append(time.perf_counter() - began)
                time.sleep(HEALTH_EVERY)

            during: list[float] = []
            errors: Counter = Counter()
            stop = threading.Event()
            poller = threading.Thread(target=poll_health, args=(health, stop, during, errors), daemon=True)
            answers: Counter = Counter()
            lock = threading.Lock()
            todo = iter(range(deliveries))

            def send() -> None:
                with httpx.Client(base_url=base, timeout=60) as client:
                    while True:
                        with lock:
                            n = next(todo, None)
                        if n is None:
                            return
                        platform, body, headers = delivery(n)
                        try:
                            status = str(client.post(f"/{SHOP}/{platform}", content=body, headers=headers).status_code)
                        except httpx.HTTPError as exc:
                            status = type(exc).__name__
                        with lock:
                            answers[status] += 1

            senders = [threading.Thread(target=send) for _ in range(clients)]
            cpu_before = cpu_seconds(receiver.pid)
            poller.start()
            began = time.perf_counter()
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            seconds = time.perf_counter() - began
            cpu = cpu_seconds(receiver.pid) - cpu_before
            stop.set()
            poller.join(timeout=10)
    finally:
        receiver.send_signal(signal.SIGINT)
        try:
            receiver.wait(timeout=20)
        except subprocess.TimeoutExpired:
            receiver.kill()
    flood_latency = latency(during)
    return {
        "deliveries": deliveries,
        "clients": clients,
        "answers": dict(sorted(answers.items())),
        "kept": kept(warehouse) - 3,  # less the three warm-up deliveries
        "flood_seconds": round(seconds, 2),
        "deliveries_per_second": round(deliveries / seconds, 1),
        "receiver_cpu_seconds": round(cpu, 2),
        "receiver_cpu_ms_per_delivery": round(1000 * cpu / deliveries, 2),
        "health_idle": latency(idle),
        "health_during_flood": flood_latency,
        "health_errors": dict(errors),
        "floor": {"health_p95_ms": FLOOR_P95_MS, "met": (flood_latency["p95_ms"] or 1e9) < FLOOR_P95_MS},
    }


def revision() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def render(doc: dict) -> str:
    r = doc["result"]
    idle, busy = r["health_idle"], r["health_during_flood"]
    return "\n".join(
        [
            f"{r['deliveries']} signed deliveries from {r['clients']} clients in {r['flood_seconds']} s: "
            f"{r['deliveries_per_second']} a second; answers {r['answers']}; kept {r['kept']}",
            f"/health ms idle:         p50 {idle['p50_ms']}  p95 {idle['p95_ms']}  max {idle['max_ms']}  "
            f"({idle['count']} polls)",
            f"/health ms during flood: p50 {busy['p50_ms']}  p95 {busy['p95_ms']}  max {busy['max_ms']}  "
            f"({busy['count']} polls){'; errors ' + str(r['health_errors']) if r['health_errors'] else ''}",
            f"receiver CPU: {r['receiver_cpu_seconds']} s ({r['receiver_cpu_ms_per_delivery']} ms a delivery)",
            f"floor health p95 < {FLOOR_P95_MS:g} ms: {'met' if r['floor']['met'] else 'MISSED'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--warehouse", help=f"warehouse URL (default: a fresh PostgreSQL database {DATABASE} on 127.0.0.1:5432)"
    )
    parser.add_argument("--redis", default=REDIS, help="the doorbell's Redis")
    parser.add_argument("--out", default=str(RESULTS / "webhook-flood.json"))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the receiver process itself, on this port
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.warehouse, args.redis)
        return 0
    if not 1 <= args.deliveries <= 100_000 or not 1 <= args.clients <= 64:
        raise SystemExit("DELIVERIES must be 1 to 100000 and CLIENTS 1 to 64")
    print(f"flooding the receiver with {args.deliveries} signed deliveries from {args.clients} clients ...", flush=True)
    doc = {
        "when": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "revision": revision(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "result": flood(args.deliveries, args.clients, args.warehouse, args.redis),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(render(doc))
    print(f"wrote {out}")
    return 0 if doc["result"]["floor"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
