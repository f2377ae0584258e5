"""``python -m geostudio_plugin.engine [--workspace DIR] <command> [SPEC]``.

SPEC is a JSON file, or ``-`` for standard input. Events go to stdout as
JSON lines (see ``protocol``); the commands are in ``commands``, exit codes in
``wire`` and error codes in ``errors``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from . import patches, protocol
from .commands import COMMANDS
from .workspace import Workspace, default_workspace

log = logging.getLogger("geostudio_plugin.engine")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises an EngineError (one JSON ``error`` event) instead of exiting 2."""

    def error(self, message: str) -> None:  # type: ignore[override] - raises instead of exiting
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")  # as argparse does, for a person at a terminal
        raise protocol.EngineError("usage", f"{self.prog}: {message}.",
                                   "Commands: " + ", ".join(COMMANDS) + " (`scripts/engine --help`).")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="geostudio-engine", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: $GEOSTUDIO_WORKSPACE or the user data folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in COMMANDS.values():
        cmd = sub.add_parser(entry.name, help=entry.help, description=entry.help)
        cmd.add_argument("spec", nargs=None if entry.needs_spec else "?", help="JSON spec file, or - for stdin")
    return parser


def read_spec(source: Optional[str]) -> Any:
    if source is None:
        return None
    name = "standard input" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise protocol.EngineError("spec_unreadable", f"Cannot read the spec file {name}: {reason}.",
                                   "Check the path, that the file is readable, and that it is a JSON text file.",
                                   exit_code=protocol.EXIT_USAGE)
    try:
        return json.loads(text)
    except RecursionError:
        raise protocol.EngineError("spec_not_json", f"The spec in {name} is nested too deeply to read.",
                                   "A spec is a JSON object a few levels deep; check what wrote this file.",
                                   exit_code=protocol.EXIT_USAGE) from None
    except json.JSONDecodeError as exc:
        raise protocol.EngineError(
            "spec_not_json", f"The spec in {name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            "Fix the JSON syntax there (a missing comma or quote is the usual cause).", exit_code=protocol.EXIT_USAGE)


def _on_signal(signum: int, _frame: Any) -> None:
    raise protocol.Cancelled(signal.Signals(signum).name)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = logging.getLogger("geostudio_plugin")
    ours.setLevel(logging.INFO)
    ours.propagate = False
    handler = protocol.ProtocolLogHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours.addHandler(stderr)


def _credential_values() -> list[str]:
    """Values of every connector credential in the environment, to keep them out of events and logs."""
    from .catalog import connector_facts

    names = {c["env"] for info in connector_facts() for c in info.get("credentials", [])}
    return [os.environ[n] for n in names if os.environ.get(n)]


def _background_priority() -> None:
    """A job started by the plugin runs at a lower CPU priority (GEOSTUDIO_ENGINE_NICE, set by the plugin's
    engine_runtime): the desktop stays responsive while torch keeps every core busy. POSIX only."""
    step = os.environ.get("GEOSTUDIO_ENGINE_NICE", "")
    if not step or not hasattr(os, "nice"):
        return
    try:
        now = os.nice(int(step))
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"geostudio-engine: CPU priority unchanged ({exc})\n")
        return
    sys.stderr.write(f"geostudio-engine: running at CPU priority nice {now}\n")


def main(argv: Optional[list[str]] = None) -> int:
    _background_priority()
    protocol.claim_stdout()
    protocol.set_secrets(_credential_values())
    sys.stderr = sys.stdout = protocol.RedactingStream(sys.stderr)
    _setup_logging()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        args = _parser().parse_args(argv)
    except protocol.EngineError as exc:  # a usage error (unknown command, missing or extra argument)
        exc.emit()
        return exc.exit_code
    if not args.command:
        _parser().print_help(sys.stderr)
        protocol.EngineError("no_command", "No command given.", "Use one of: " + ", ".join(COMMANDS)).emit()
        return protocol.EXIT_USAGE
    started = time.monotonic()
    try:
        workspace = Workspace(args.workspace or default_workspace())
        try:
            workspace.prepare(args.command)  # a command that writes: refused here on a read-only workspace
        except OSError as exc:
            raise protocol.EngineError("workspace_unusable", f"The workspace {workspace.root} cannot be used: "
                                       f"{exc.strerror or exc}.", "Choose a folder you can write to "
                                       "(--workspace, GEOSTUDIO_WORKSPACE or GeoStudio > Settings).") from None
        entry = COMMANDS[args.command]
        spec = entry.parse(read_spec(args.spec))
        outputs, summary = entry.command_function()(spec, workspace)  # imported now: each command its own
        protocol.result(outputs=outputs, summary=summary)
    except protocol.Cancelled as exc:
        protocol.EngineError("cancelled", f"{args.command} was cancelled ({exc}); its unfinished outputs were removed.").emit()
        return protocol.EXIT_CANCELLED
    except protocol.EngineError as exc:
        exc.emit()
        return exc.exit_code
    except SystemExit as exc:  # library code inside a command called sys.exit: report it like any other bug
        traceback.print_exc(file=sys.stderr)
        protocol.EngineError(
            "internal_error", f"{args.command} stopped early: code inside it called sys.exit({exc.code}).",
            "This is a bug in GeoStudio; the traceback is in the engine log (stderr).").emit()
        return protocol.EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never a bare traceback
        traceback.print_exc(file=sys.stderr)
        protocol.EngineError(
            "internal_error", f"{args.command} failed unexpectedly: {type(exc).__name__}: {exc}",
            "This is a bug in GeoStudio; the full traceback is in the engine log (stderr).",
            details=traceback.format_exc().splitlines()[-12:]).emit()
        return protocol.EXIT_INTERNAL
    finally:
        patches.undo_all()  # third-party code as it was (requests, GDAL/fsspec settings, Terrakit endpoints)
    log.info("%s finished in %.1f s", args.command, time.monotonic() - started)
    return protocol.EXIT_OK


if __name__ == "__main__":
    code = main()
    if code == protocol.EXIT_CANCELLED:
        # Leave at once: the cancel is reported and the outputs rolled back; the interpreter's own teardown
        # (torch, Lightning, DataLoader workers) can take seconds on a loaded machine, past the client's
        # SIGKILL grace (engine_client.CANCEL_GRACE_S), which would turn a clean 130 into a -9.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)
