"""Issue 9, spec side: usage errors, non-finite numbers, bounds, tiling minimums, suffixes and ids, unknown fields.

Each test runs the real engine CLI; every case here stops at validation (about a second, no torch import).
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXIT_INVALID_SPEC, EXIT_USAGE, engine_command, engine_env, parse_stdout, run_engine

import subprocess


def _cli(workspace: Path, *args: str) -> tuple[int, list[dict], str]:
    proc = subprocess.run(engine_command(workspace, *args), capture_output=True, text=True, env=engine_env(),
                          cwd=str(workspace.parent), timeout=60)
    events, bad = parse_stdout(proc.stdout)
    assert not bad, f"non-event lines on stdout: {bad!r}"
    return proc.returncode, events, proc.stderr


# --- #11: every exit, argparse usage errors included, ends with one JSON error event ---------------------------

def test_usage_errors_end_with_one_error_event(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.parent.mkdir(parents=True, exist_ok=True)
    for args, named in ((["bogus"], "bogus"), (["tune"], "spec"), (["list", "a", "b"], "b"),
                        (["--bogus-option", "list"], "--bogus-option"), (["--workspace"], "--workspace")):
        code, events, _ = _cli(workspace, *args)
        assert code == EXIT_USAGE, (args, code, events)
        errors = [e for e in events if e["event"] == "error"]
        assert len(errors) == 1 and events[-1] is errors[0], (args, events)
        assert errors[0]["code"] == "usage", (args, errors)
        assert named in errors[0]["message"], (args, errors)
    code, events, _ = _cli(workspace, "--help")
    assert code == 0 and not [e for e in events if e["event"] == "error"]
