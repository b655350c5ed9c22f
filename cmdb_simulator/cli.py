"""``syncd simulate`` / ``python -m cmdb_simulator``: serve the simulator until signalled.

Prints one JSON line, ``{"event": "simulator_listening", "url": ...}``, on
stdout so a parent process that asked for port 0 can find the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import NoReturn

from cmdb_simulator.chain import TTL_SECONDS
from cmdb_simulator.faults import ALL_FAULT_KINDS, FAULT_KINDS, check_kinds
from cmdb_simulator.fixture import Fixture, FixtureError
from cmdb_simulator.server import Simulator, SimulatorOptions
from cmdb_simulator.version import DEFAULT as DEFAULT_VERSION
from cmdb_simulator.version import LINES, CmdbVersion
from cmdb_simulator.watch import HOLD_SECONDS

DEFAULT_RATE = 100.0
"""bk-cmdb's published API-gateway limit: 100 requests/s per app and resource
(docs/apidoc/apigw/open/bk_apigw_resources_bk-cmdb.yaml:3206-3212)."""

EX_CONFIG = 78
"""sysexits' EX_CONFIG: the fixture or an option is unusable."""


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT (port 0 = any free port), got {value!r}"
        )
    return host.strip("[]"), int(port)


def _kinds(value: str) -> tuple[str, ...]:
    try:
        return check_kinds(k.strip() for k in value.split(",") if k.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(value: str) -> float | None:
    if value.strip().lower() in ("off", "none", "0"):
        return None
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected requests/s or 'off', got {value!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError("must be positive (or 'off')")
    return rate


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return value == "on"


def _version(value: str) -> str:
    try:
        return CmdbVersion.parse(value).text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(value: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return rate


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _positive(value: str) -> float:
    number = _non_negative(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


class _OptionsParser(argparse.ArgumentParser):
    """A bad option is a configuration error: usage, the reason, exit 78 (not argparse's 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_CONFIG, f"{self.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, for ``syncd simulate`` and ``python -m cmdb_simulator``;
    a bad one exits 78, as a bad fixture does."""
    parser.__class__ = _OptionsParser
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 0), metavar="HOST:PORT",
        help="address to serve on; port 0 picks a free port (default 127.0.0.1:0)",
    )  # fmt: skip
    parser.add_argument(
        "--fixture", required=True, metavar="FILE", help="fixture (YAML or JSON) to start from"
    )
    parser.add_argument(
        "--rate-limit", type=_rate, default=DEFAULT_RATE, metavar="RPS|off",
        help="requests/s per app and resource (token bucket); beyond it 429"
        " RATE_LIMIT_RESTRICTION (ESB: 1306429); default 100, as bk-cmdb publishes it",
    )  # fmt: skip
    parser.add_argument(
        "--max-in-flight", type=int, default=None, metavar="N",
        help="API gateway: requests served at once; beyond it 429 CONCURRENCY_LIMIT_RESTRICTION",
    )  # fmt: skip
    parser.add_argument(
        "--auth", type=_on_off, default=None, metavar="on|off",
        help="bk-cmdb authorization (attribute parse 1199045, IAM 9900403);"
        " default: the fixture's `auth`, on unless it says false",
    )  # fmt: skip
    parser.add_argument(
        "--cmdb-version", type=_version, default=DEFAULT_VERSION, metavar="VERSION",
        help=f"bk-cmdb release to answer as: {'|'.join(LINES)}[.PATCH] (default {DEFAULT_VERSION})",
    )  # fmt: skip
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="MS", help="base delay of every request"
    )
    parser.add_argument(
        "--per-detail-ms", type=float, default=0.0, metavar="MS",
        help="extra delay per batch detail",
    )  # fmt: skip
    parser.add_argument(
        "--fault-rate", type=_fraction, default=0.0, metavar="P",
        help="fraction of requests that get a fault (0..1)",
    )  # fmt: skip
    parser.add_argument(
        "--fault-kinds", type=_kinds, default=FAULT_KINDS, metavar="LIST",
        help=f"comma-separated subset of {','.join(ALL_FAULT_KINDS)}"
        f" (default: {','.join(FAULT_KINDS)})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="fault RNG seed")
    parser.add_argument(
        "--watch-timeout", type=_non_negative, default=HOLD_SECONDS, metavar="SECONDS",
        help="resource_watch holds a cursor request that finds nothing until more than this"
        f" has passed in whole seconds, up to 1 s more (default {HOLD_SECONDS:g}, as bk-cmdb)",
    )  # fmt: skip
    parser.add_argument(
        "--watch-retention", type=_positive, default=TTL_SECONDS, metavar="SECONDS",
        help="how long watch events are kept; an older cursor answers 1103007"
        f" (default {TTL_SECONDS}, bk-cmdb's 6 h for inst_asst)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-cost-us", type=_non_negative, default=0.0, metavar="N",
        help="server time in microseconds per row a page.start skips in"
        " search_instance_associations, as MongoDB walks them (default 0)",
    )  # fmt: skip


def simulator_from_args(args: argparse.Namespace) -> Simulator:
    """The simulator the parsed options describe; FixtureError or ValueError if they cannot."""
    fixture = Fixture.load(args.fixture)
    options = SimulatorOptions(
        rate_limit=args.rate_limit,
        max_in_flight=args.max_in_flight,
        latency_ms=args.latency_ms,
        per_detail_ms=args.per_detail_ms,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(args.fault_kinds),
        seed=args.seed,
        auth=args.auth,
        cmdb_version=args.cmdb_version,
        watch_timeout_s=args.watch_timeout,
        watch_retention_s=args.watch_retention,
        skip_cost_us=args.skip_cost_us,
    )
    return Simulator(fixture, options)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a signalled stop, 78 on a bad fixture or option."""
    try:
        simulator = simulator_from_args(args)
    except (FixtureError, ValueError) as exc:
        print(f"syncd simulate: {exc}", file=sys.stderr)
        return EX_CONFIG
    host, port = args.listen
    try:
        return asyncio.run(_serve(simulator, host, port))
    except OSError as exc:
        print(f"syncd simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1


async def _serve(simulator: Simulator, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with simulator.running(host, port) as url:
        sys.stdout.write(json.dumps({"event": "simulator_listening", "url": url}) + "\n")
        sys.stdout.flush()
        print(f"syncd simulate: CMDB simulator listening on {url}", file=sys.stderr)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _OptionsParser(
        prog="python -m cmdb_simulator", description="BlueKing CMDB simulator (both gateways)"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
