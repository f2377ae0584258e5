"""The command registry: one entry per command, each resolvable, and the only place that emits ``result``."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from geostudio_plugin.engine import commands
from geostudio_plugin.engine.commands import COMMANDS

from conftest import REPO, engine_env, run_engine, run_ok

ENGINE = REPO / "geostudio_plugin" / "engine"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_entry_resolves(name: str):
    entry = COMMANDS[name]
    assert entry.name == name and entry.help
    function = entry.command_function()
    assert len(inspect.signature(function).parameters) == 2  # (spec, workspace)
    model = entry.spec_model()
    if entry.spec is None:
        assert model is None and not entry.needs_spec
    else:
        assert issubclass(model, BaseModel)


def test_commands_module_is_stdlib_only():
    imported = _imports(ENGINE / "commands.py")
    assert all(name.split(".")[0] in sys.stdlib_module_names or name.startswith("geostudio_plugin.engine.specs")
               or name == "__future__" for name in imported), imported


def test_no_command_module_emits_result_itself():
    """``__main__`` emits the one result event; command functions return (outputs, summary)."""
    offenders = [str(p.relative_to(REPO)) for p in ENGINE.rglob("*.py") if p.name not in ("protocol.py", "__main__.py")
                 and "protocol.result(" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_package_inits_only_reexport():
    for init in ENGINE.rglob("__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        defined = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert defined == [], f"{init.relative_to(REPO)} defines {[n.name for n in defined]}"


def test_import_boundaries():
    """catalog.py is data only (no connectors: the old import circle); __main__ does not import the launcher;
    nothing under engine/ imports the plugin's other modules."""
    assert not any(".connectors" in n for n in _imports(ENGINE / "catalog.py"))
    assert not any("engine_runtime" in n for n in _imports(ENGINE / "__main__.py"))
    for path in ENGINE.rglob("*.py"):
        outside = [n for n in _imports(path) if n.startswith("geostudio_plugin")
                   and not n.startswith("geostudio_plugin.engine")]
        assert outside == [], f"{path.relative_to(REPO)} imports {outside}"


def test_spec_is_validated_with_the_commands_label(tmp_path: Path):
    run = run_engine("prescan", "-", tmp_path / "ws", stdin='{"label_suffix": ".tif"}')
    assert run.returncode == 3 and run.error["code"] == "invalid_spec"
    assert run.error["message"].startswith("The pre-scan spec has")


def test_commands_without_spec_run_without_one(tmp_path: Path):
    for name in ("list", "catalog"):
        run = run_ok(name, workspace=tmp_path / "ws")
        assert len(run.of("result")) == 1


def test_scripts_engine_help_lists_the_registry():
    proc = subprocess.run(["bash", str(REPO / "scripts" / "engine"), "--help"], capture_output=True, text=True,
                          env=engine_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert proc.stdout.strip() == commands.usage().strip()
