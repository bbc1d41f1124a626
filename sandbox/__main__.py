"""Command line: `python -m sandbox {serve,generate,validate}`."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from collections.abc import Callable

from sandbox.core import Sandbox, Settings, check_clock_rate, check_rate_scale
from sandbox.generate import DEFAULT_NOW, order_count, write
from sandbox.life import LifeSettings, ShopLife
from sandbox.scenario import ScenarioError, format_time, load_scenario, parse_scenario, read_json, scenario_time
from sandbox.server import DEFAULT_PORTS, SandboxServer


def _number_option(check: Callable[[float], float]) -> Callable[[str], float]:
    """An argparse type for a number the sandbox checks with `check` (the admin API's check where it
    has one): argparse names the option when it is refused, and exits 2."""

    def parse(text: str) -> float:
        try:
            return check(float(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _port_option(text: str) -> tuple[str, int]:
    """--port NAME=PORT, as argparse reads it."""
    name, _, port = text.partition("=")
    if name not in DEFAULT_PORTS or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PORT with NAME one of {', '.join(DEFAULT_PORTS)} and PORT 0-65535, got {text!r}"
        )
    return name, int(port)


def load_settings(path: str | None, rate_scale: float | None, clock_rate: float | None) -> Settings:
    """A settings file's Settings (if `path` is given) with the command line's values over them;
    ValueError naming the file and the setting."""
    given = {
        name: value for name, value in (("rate_scale", rate_scale), ("clock_rate", clock_rate)) if value is not None
    }
    if not path:
        return Settings(**given)
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        unknown = set(data) - set(Settings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        return Settings(**{**data, **given})
    except ValueError as exc:
        raise ValueError(f"--settings {path}: {exc}") from None


def load_life(path: str) -> ShopLife:
    """A living shop from a JSON file of LifeSettings fields (`start` as ISO-8601); ValueError naming
    the file and the field."""
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        unknown = set(data) - set(LifeSettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        if "start" not in data:
            raise ValueError("start: is required")
        data["start"] = scenario_time(data["start"], "start")
        return ShopLife(LifeSettings(**data))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--life {path}: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    if bool(args.scenario) == bool(args.life):
        print("error: give --scenario FILE or --life FILE", file=sys.stderr)
        return 2
    # every file is read and checked, and the simulators loaded, before a port is bound
    try:
        settings = load_settings(args.settings, args.rate_scale, args.clock_rate)
        life = load_life(args.life) if args.life else None
        scenario = (
            load_scenario(args.scenario)
            if args.scenario
            else parse_scenario({"now": format_time(life.settings.start), "orders": []})
        )
        sandbox = Sandbox(scenario, settings)
    except ValueError as exc:  # each names its file and field (a ScenarioError its order, or its simulator)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if life is not None:
        sandbox.live(life)
    server = SandboxServer(sandbox, ports={**DEFAULT_PORTS, **dict(args.port)}, host=args.host)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(server.serve())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        while not server.started:
            await asyncio.sleep(0.05)
            if task.done():
                return task.result()
        what = (
            f"a living shop of {len(life.plans)} planned orders"
            if life is not None
            else f"{len(scenario.orders)} orders"
        )
        print(
            f"orderops sandbox: {what}, clock at {scenario.now:%Y-%m-%dT%H:%M:%SZ} (rate {settings.clock_rate})",
            flush=True,
        )
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
    p_serve.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        type=_port_option,
        help=f"override a port ({', '.join(f'{k}={v}' for k, v in DEFAULT_PORTS.items())}; 0 = any)",
    )
    p_serve.add_argument("--settings", help="settings JSON: rate_scale, clock_rate, durations, platforms")
    p_serve.add_argument(
        "--rate-scale", type=_number_option(check_rate_scale), help="multiply every quota (for fast tests; reported)"
    )
    p_serve.add_argument(
        "--clock-rate", type=_number_option(check_clock_rate), help="scenario seconds per wall second (0 = frozen)"
    )
    p_gen = sub.add_parser("generate", help="write a realistic scenario file")
    p_gen.add_argument("--orders", type=order_count, required=True)
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
