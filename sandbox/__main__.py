"""Command line: `python -m sandbox {serve,generate,validate}`."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from sandbox.core import Sandbox, Settings
from sandbox.generate import DEFAULT_NOW, write
from sandbox.life import LifeSettings, ShopLife
from sandbox.scenario import ScenarioError, format_time, load_scenario, parse_scenario, parse_time
from sandbox.server import DEFAULT_PORTS, SandboxServer


def _port_overrides(values: list[str]) -> dict[str, int]:
    ports = dict(DEFAULT_PORTS)
    for item in values:
        name, sep, port = item.partition("=")
        if not sep or name not in DEFAULT_PORTS or not port.isdigit():
            raise SystemExit(f"--port {item!r}: expected NAME=PORT with NAME one of {', '.join(DEFAULT_PORTS)}")
        ports[name] = int(port)
    return ports


def load_settings(path: str | None, rate_scale: float | None, clock_rate: float | None) -> Settings:
    settings = Settings()
    if path:
        try:
            data = json.loads(open(path).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--settings {path}: {exc}") from None
        unknown = set(data) - {"rate_scale", "clock_rate", "durations", "platforms"}
        if unknown:
            raise SystemExit(f"--settings {path}: unknown key(s) {', '.join(sorted(unknown))}")
        settings = Settings(**data)
    if rate_scale is not None:
        settings.rate_scale = rate_scale
    if clock_rate is not None:
        settings.clock_rate = clock_rate
    if settings.rate_scale <= 0:
        raise SystemExit("rate_scale must be positive")
    return settings


def load_life(path: str) -> ShopLife:
    """A living shop from a JSON file of LifeSettings fields (`start` as ISO-8601)."""
    try:
        data = json.loads(open(path).read())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        unknown = set(data) - set(LifeSettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        if "start" not in data:
            raise ValueError("start: is required")
        data["start"] = parse_time(data["start"], "start")
        return ShopLife(LifeSettings(**data))
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise SystemExit(f"--life {path}: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    if bool(args.scenario) == bool(args.life):
        print("error: give --scenario FILE or --life FILE", file=sys.stderr)
        return 2
    life = load_life(args.life) if args.life else None
    try:
        scenario = load_scenario(args.scenario) if args.scenario else parse_scenario(
            {"now": format_time(life.settings.start), "orders": []})
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = load_settings(args.settings, args.rate_scale, args.clock_rate)
    sandbox = Sandbox(scenario, settings)
    if life is not None:
        sandbox.live(life)
    server = SandboxServer(sandbox, ports=_port_overrides(args.port), host=args.host)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(server.serve())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        while not server.started:
            await asyncio.sleep(0.05)
            if task.done():
                return task.result()
        what = (f"a living shop of {len(life.plans)} planned orders" if life is not None
                else f"{len(scenario.orders)} orders")
        print(f"orderops sandbox: {what}, clock at {scenario.now:%Y-%m-%dT%H:%M:%SZ}"
              f" (rate {settings.clock_rate})", flush=True)
        if settings.rate_scale != 1:
            print(f"NOTE: quotas scaled x{settings.rate_scale} (not the platforms' documented rates)", flush=True)
        for name, url in server.urls.items():
            print(f"  {name:12s} {url}", flush=True)
        print(f"  admin        {next(iter(server.urls.values()))}/_sandbox/info (on every port)", flush=True)
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve every platform simulator on loopback ports")
    p_serve.add_argument("--scenario", help="scenario JSON file: a fixed shop at one moment")
    p_serve.add_argument("--life", help="living-shop JSON file (LifeSettings: start, days, orders_per_day, seed, ...)")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                         help=f"override a port ({', '.join(f'{k}={v}' for k, v in DEFAULT_PORTS.items())}; 0 = any)")
    p_serve.add_argument("--settings", help="settings JSON: rate_scale, clock_rate, durations, platforms")
    p_serve.add_argument("--rate-scale", type=float, help="multiply every quota (for fast tests; reported)")
    p_serve.add_argument("--clock-rate", type=float, help="scenario seconds per wall second (0 = frozen)")
    p_gen = sub.add_parser("generate", help="write a realistic scenario file")
    p_gen.add_argument("--orders", type=int, required=True)
    p_gen.add_argument("--seed", type=int, default=1)
    p_gen.add_argument("--now", default=DEFAULT_NOW)
    p_gen.add_argument("--out", required=True)
    p_check = sub.add_parser("validate", help="check a scenario file and say what is wrong")
    p_check.add_argument("scenario")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "generate":
        try:
            path = write(args.out, args.orders, args.seed, args.now)
        except (ValueError, ScenarioError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.orders} orders to {path}")
        return 0
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {len(scenario.orders)} orders, now {scenario.now:%Y-%m-%dT%H:%M:%SZ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
