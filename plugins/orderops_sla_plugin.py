"""Airflow plugin: the "SLA breaches" and "operations" pages (include/report/sla_ui.py) in the Airflow 3 UI.

Every Airflow component imports plugins, so this module imports nothing heavy: the page's app is
built on its first request, inside the API server, from the `orderops_warehouse` connection and the
reports folder (`ORDEROPS_REPORTS_DIR`, default state/reports) and each shop's Data Docs under the GX
folder (`ORDEROPS_GX_DIR`, default state/gx). Airflow does not authenticate plugin
apps, so every route asks for an Airflow login allowed to read DAG runs (the escalation inbox's
changes and the operations page's retries: one allowed to change them; refused, a person gets the
page's styled answer); a browser without one is sent to the login page and back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/orderops-sla"
WAREHOUSE_CONN_ID = "orderops_warehouse"
# what a refused person is told, by whether they asked to read (True) or to change (False)
FORBIDDEN = {
    True: "your Airflow user may not read DAG runs",
    False: "your Airflow user may read DAG runs but not change them (acting in the inbox or retrying an action "
    "needs that right); nothing was changed",
}


def _login_required(method: Literal["GET", "PUT"] = "GET"):
    """FastAPI dependency: an Airflow user who may read (GET) or change (PUT) the runs of DAGs
    (cookie or bearer token). The page covers every shop's DAG, so the right asked for is on DAGs
    as a whole: never on a DAG the request itself names (a `?dag_id=` would otherwise pick it)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException

    def allowed(user=Depends(get_user)) -> None:
        if not get_auth_manager().is_authorized_dag(method=method, access_entity=DagAccessEntity.RUN, user=user):
            raise HTTPException(403, "Forbidden")

    return allowed


def build_app():
    """The page's FastAPI app, guarded by Airflow's login."""
    from functools import cache

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, RedirectResponse

    from include.airflow.glue import schedule_intervals, shopify_domains, warehouse_url
    from include.quality.checkpoints import gx_dir
    from include.report.reports import reports_dir
    from include.report.sla_ui import create_app, render_refusal

    async def reviewer(user=Depends(get_user)) -> str:
        """Who is acting in the inbox: the Airflow user of this request."""
        return user.get_name()

    app = create_app(
        warehouse_url(WAREHOUSE_CONN_ID),
        reports_dir(),
        dependencies=[Depends(_login_required())],
        write_dependencies=[Depends(_login_required("PUT"))],
        reviewer=reviewer,
        gx_root=gx_dir(),
        # read on the first page view: a changed Shopify host shows after the API server restarts
        shopify_domains=cache(shopify_domains),
        intervals=cache(schedule_intervals),
    )

    @app.exception_handler(HTTPException)
    async def to_login(request: Request, exc: HTTPException):
        # a person opening the page without a session gets the login form, then comes back here
        if exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(get_auth_manager().get_url_login(next_url=target), status_code=303)
        if exc.status_code == 403 and "text/html" in request.headers.get("accept", ""):
            # a person whose Airflow role may not do this: the page's own styled answer, the way back
            back = "operations" if request.url.path.endswith("/retry") else "./"
            return HTMLResponse(
                render_refusal(f"{exc.detail}: {FORBIDDEN[request.method == 'GET']}", back=back), status_code=403
            )
        return await http_exception_handler(request, exc)

    return app


class LazyApp:
    """ASGI app that builds the real one on its first request (and retries if building failed)."""

    def __init__(self, factory):
        self._factory = factory
        self._app: Any = None  # the ASGI app, once built
        self._lock = asyncio.Lock()

    async def __call__(self, scope, receive, send):
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    # connection lookup and engine set-up block: keep them off the server's event loop
                    self._app = await asyncio.to_thread(self._factory)
        await self._app(scope, receive, send)


EVENTS_PREFIX = "/orderops-events"
# How long the receiver uses a shop's secrets as read (minutes; 0 = read on every delivery)
SECRETS_MINUTES_ENV = "ORDEROPS_WEBHOOK_SECRETS_MINUTES"


def build_events_app():
    """The platforms' webhook endpoints, /orderops-events/<shop>/<tiktok|shopify|shipbob>: no
    Airflow login (a platform has none); each delivery is verified by its platform's signature with
    the shop's secrets (include/events/receiver.py)."""
    from include.airflow.glue import warehouse_url
    from include.events.platform_events import EventInbox
    from include.events.receiver import create_app, shop_secrets
    from include.run.shops import minutes_setting, shops_file
    from include.store.warehouse import Warehouse

    # an entry the shops file refuses has no DAG: its deliveries are refused, the others' kept
    shops = {shop.name: shop for shop in shops_file().shops}
    wh = Warehouse(warehouse_url(WAREHOUSE_CONN_ID))
    wh.migrate()
    clients = {}

    def doorbell(shop: str):
        """The Redis the shop's AssetWatcher listens on, as the Redis provider reads its connection
        (host, port, password, extra db and ssl settings); one client per shop."""
        if shop not in clients:
            from airflow.providers.redis.hooks.redis import RedisHook

            events = shops[shop].events
            assert events is not None  # only a shop that takes events gets deliveries (shop_secrets)
            clients[shop] = RedisHook(redis_conn_id=events.redis_conn_id).get_conn()
        return clients[shop]

    def rate_of(name: str) -> float:
        events = shops[name].events
        assert events is not None  # as above
        return events.deliveries_per_second

    return create_app(
        lambda name: shop_secrets(shops.get(name)),
        EventInbox(wh),
        doorbell,
        rate_of=rate_of,
        secrets_seconds=60 * minutes_setting(SECRETS_MINUTES_ENV, 1),
    )


class OrderopsSlaPlugin(AirflowPlugin):
    name = "orderops_sla"
    fastapi_apps = [
        {"app": LazyApp(build_app), "url_prefix": URL_PREFIX, "name": "orderops SLA breaches"},
        {"app": LazyApp(build_events_app), "url_prefix": EVENTS_PREFIX, "name": "orderops platform events"},
    ]
    external_views = [
        {
            "name": "SLA breaches",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "sla_breaches",
            "category": "browse",
        },
        {
            "name": "orderops operations",
            "href": f"{URL_PREFIX}/operations",
            "destination": "nav",
            "url_route": "orderops_operations",
            "category": "browse",
        },
    ]
