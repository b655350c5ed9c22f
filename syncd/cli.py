"""Command line: ``syncd run | once | check-config | demo | simulate``.

Exit statuses: 0 success; 1 ``once`` finished with pairs not in the CMDB;
75 (EX_TEMPFAIL) the ops port is in use; 78 (EX_CONFIG) invalid configuration,
which systemd does not restart on.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from syncd import __version__
from syncd.config.checks import security_warnings, unused_settings
from syncd.config.load import load_settings
from syncd.config.settings import EX_CONFIG, ConfigError, Settings
from syncd.support import startup

EX_TEMPFAIL = 75
"""sysexits.h: temporary failure (the ops port is taken); worth a retry later."""

if TYPE_CHECKING:
    from syncd.core.plan import RelationPlan
    from syncd.state import StateStore


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config file (default: $SYNCD_CONFIG)",
    )


def build_parser(*, simulate_options: bool = True) -> argparse.ArgumentParser:
    """The command line; ``simulate_options=False`` leaves out the simulator's options,
    whose import costs every other command a good part of its start-up."""
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Keep BlueKing CMDB instance associations in step with a topology source.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon: a cycle every sync.interval seconds")
    _config_arg(run)
    once = sub.add_parser("once", help="one full cycle, then exit (0: every pair in the CMDB)")
    _config_arg(once)
    check = sub.add_parser("check-config", help="validate the config and exit (78 if invalid)")
    _config_arg(check)
    resync = sub.add_parser(
        "resync", help="ask the running daemon for a full resync (ops endpoint or pidfile + SIGHUP)"
    )
    _config_arg(resync)
    plan = sub.add_parser(
        "plan", help="what a cycle would do now, changing nothing (exit 0: nothing, 2: changes)"
    )
    _config_arg(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    demo = sub.add_parser("demo", help="the daemon against the built-in simulator, two cycles")
    demo.add_argument("--dir", type=Path, default=Path("config/demo"), help="demo files")
    simulate = sub.add_parser("simulate", help="serve the built-in CMDB simulator")
    if simulate_options:
        from cmdb_simulator import cli as sim_cli

        sim_cli.add_arguments(simulate)
    return parser


def _load(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def main(argv: list[str] | None = None) -> int:
    # A SIGHUP is held from here (``python -m syncd`` holds it from its first line) until
    # the daemon handles it; other commands take it as usual.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(simulate_options="simulate" in words).parse_args(argv)
    command: str = args.command
    if command not in ("run", "once"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    if command == "simulate":
        from cmdb_simulator import cli as sim_cli

        startup.settle()
        return sim_cli.run(args)
    if command == "demo":
        from syncd.commands.demo import run_demo

        startup.settle()
        return run_demo(args.dir)
    settings = _load(args.config)
    from syncd.support import log

    if command not in ("run", "once"):
        startup.settle()
    if command == "plan":
        log.configure(settings.log.level, "json", stream=sys.stderr)
        return asyncio.run(_plan(settings, as_json=args.json))
    log.configure(settings.log.level, settings.log.format)
    if command == "resync":
        return _resync(settings)
    if command == "check-config":
        return _check_config(settings)
    from syncd.runtime.daemon import Daemon

    once = command == "once"
    progress = None
    if once and sys.stderr.isatty():
        from syncd.runtime.progress import ProgressBar

        progress = ProgressBar(sys.stderr)
    from syncd.runtime.errors import OpsUnavailable

    startup.settle()  # the start-up imports are done
    daemon = Daemon(settings, once=once, progress=progress)
    try:
        return asyncio.run(daemon.run())
    except OpsUnavailable as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EX_TEMPFAIL


def _resync(settings: Settings) -> int:
    """``syncd resync``: ask the running daemon (pid file or ops endpoint) for a resync."""
    from syncd.runtime.control import ControlError, ops_url_for, request_resync

    ops = settings.ops
    url = ops_url_for(ops.host, ops.port) if ops.enabled and ops.port else None
    try:
        token = ops.resync_token.get_secret_value() if ops.resync_token else None
        print(f"syncd: {request_resync(pidfile=ops.pidfile, ops_url=url, token=token)}")
    except ControlError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_config(settings: Settings) -> int:
    """``syncd check-config``: the configuration is valid; say what it points at."""
    for warning in [*security_warnings(settings.cmdb), *unused_settings(settings)]:
        print(f"syncd: warning: {warning}", file=sys.stderr)
    from syncd.cmdb.gateway import describe

    names = ", ".join(r.name for r in settings.relations)
    print(f"syncd: config OK: {len(settings.relations)} relation(s): {names}")
    print(f"syncd: {describe(settings.cmdb)}")
    return 0


async def _plan(settings: Settings, *, as_json: bool) -> int:
    """Plan every relation against a fresh read of the CMDB; write nothing."""
    import tempfile

    from syncd.cmdb.client import CmdbClient, CmdbError
    from syncd.commands.planview import plan_document, render_json, render_text
    from syncd.engine.identity import check_identities
    from syncd.engine.reconcile import Reconciler
    from syncd.sources.base import SourceError

    with tempfile.TemporaryDirectory(prefix="syncd-plan-") as tmp:
        store = _plan_store(settings.state.path, Path(tmp) / "state.db")
        relocates = check_identities(store, settings.relations, write=False, quiet=True).relocates
        if relocates:
            # Plan against what a start would make of the state: on a copy of it.
            store = _state_copy(store, Path(tmp) / "moved.db")
        identities = check_identities(store, settings.relations, write=relocates)
        try:
            async with CmdbClient(settings.cmdb) as client:
                reconciler = Reconciler(settings, client, store)
                plans: list[RelationPlan | str] = []
                for rel in settings.relations:
                    try:
                        plans.append(await reconciler.plan_relation(rel))
                    except (SourceError, CmdbError) as exc:
                        plans.append(str(exc))
                    except Exception as exc:  # RelationRefused and kin: report, don't crash
                        plans.append(f"{type(exc).__name__}: {exc}")
                ids = {
                    rel.name: store.association_ids(rel.name, _named_pairs(plan))
                    for rel, plan in zip(settings.relations, plans, strict=True)
                    if not isinstance(plan, str)
                }
        finally:
            store.close()
    doc = plan_document(settings, plans, ids, identities)
    print(render_json(doc) if as_json else render_text(doc))
    if any(isinstance(p, str) for p in plans):
        return 1
    return 2 if doc["changes"] else 0


def _state_copy(store: StateStore, path: Path) -> StateStore:
    """A writable copy of a store (the original closed), for a plan to change freely."""
    import sqlite3

    from syncd.state import StateStore

    copy = sqlite3.connect(path)
    try:
        store.database.conn.backup(copy)
    finally:
        copy.close()
        store.close()
    return StateStore.open(path)[0]


def _named_pairs(plan: RelationPlan) -> set[int]:
    """The known pairs a plan names (deleted, replaced, blocking, kept): their ids are shown."""
    named = set(plan.prune.delete) | plan.kept.keys()
    named.update(old for move in plan.moves for old in move.replaces)
    named.update(old for olds in plan.blockers.values() for old in olds)
    return named


def _plan_store(path: Path, scratch: Path) -> StateStore:
    """The state read-only; missing or unusable: an empty scratch store (the real file is
    never created, moved or repaired by a plan)."""
    from syncd.state import StateError, StateStore

    if path.exists():
        try:
            return StateStore.open_readonly(path)
        except StateError as exc:
            print(f"syncd: {exc}; planning against an empty state", file=sys.stderr)
    return StateStore.open(scratch)[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
