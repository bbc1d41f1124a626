"""Serve every simulator app on its own loopback port, in the foreground or a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from sandbox.core import Sandbox

HOST = "127.0.0.1"
# Default ports, in the order the apps are built; 0 picks a free port.
DEFAULT_PORTS = {
    "tiktok": 8801,
    "tiktok_auth": 8802,
    "shopify": 8803,
    "amazon_mcf": 8804,
    "amazon_lwa": 8805,
    "shipbob": 8806,
    "amazon_sqs": 8807,
}


def bind(port: int, host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it each keep-alive answer waits ~40 ms (Nagle + delayed ACK)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@dataclass
class SandboxServer:
    """Runs all apps of a Sandbox. `ports` maps app name -> port (0 = any free port)."""

    sandbox: Sandbox
    ports: dict[str, int] = field(default_factory=dict)
    host: str = HOST
    log_level: str = "warning"
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[str, socket.socket] = {}

    def _bind_all(self) -> None:
        for name in self.sandbox.apps():
            port = self.ports.get(name, DEFAULT_PORTS.get(name, 0))
            sock = bind(port, self.host)
            self._sockets[name] = sock
            self.urls[name] = f"http://{self.host}:{sock.getsockname()[1]}"

    async def serve(self) -> None:
        if not self._sockets:
            self._bind_all()
        tasks = []
        for name, app in self.sandbox.apps().items():
            config = uvicorn.Config(
                app,
                log_level=self.log_level,
                access_log=False,
                timeout_keep_alive=30,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
            server = uvicorn.Server(config)
            server.install_signal_handlers = lambda: None  # the CLI handles signals itself
            self._servers.append(server)
            tasks.append(server.serve(sockets=[self._sockets[name]]))
        await asyncio.gather(*tasks)

    def start(self) -> SandboxServer:
        """Start in a daemon thread; returns once every port accepts connections."""
        self._bind_all()
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_until_complete(self.serve())

        self._thread = threading.Thread(target=run, name="orderops-sandbox", daemon=True)
        self._thread.start()
        ready.wait(10)
        for _ in range(500):
            if self.started:
                break
            threading.Event().wait(0.02)
        return self

    @property
    def started(self) -> bool:
        return bool(self._servers) and all(s.started for s in self._servers)

    def request_exit(self) -> None:
        for server in self._servers:
            server.should_exit = True

    def stop(self) -> None:
        self.request_exit()
        if self._thread is not None:
            self._thread.join(10)
        for sock in self._sockets.values():
            sock.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
