"""Every error code the source can raise is in the one table (engine/errors.py), and the README shows that table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from geostudio_plugin.engine import errors, wire
from geostudio_plugin.engine.protocol import EngineError, ExternalError, SpecError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "geostudio_plugin"
ERROR_CLASSES = {"EngineError": None, "SpecError": wire.EXIT_INVALID_SPEC, "ExternalError": wire.EXIT_EXTERNAL}
START, END = "<!-- error-codes:start -->", "<!-- error-codes:end -->"


def _constants() -> dict[str, str]:
    """Module-level string constants of the package (``E_FILES = "dataset_files"``, tuple unpacking too)."""
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                    found[target.id] = node.value.value
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for name, value in zip(target.elts, node.value.elts):
                        if isinstance(name, ast.Name) and isinstance(value, ast.Constant):
                            found[name.id] = value.value
    return found


def _raised_codes() -> list[tuple[str, str, str, ast.Call]]:
    """(where, class, code or f-string prefix marked with '*', call) for every EngineError-family call."""
    constants = _constants()
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):  # helpers taking the code to raise: check their default
                for arg, default in zip(node.args.args[::-1], node.args.defaults[::-1]):
                    if arg.arg == "code" and isinstance(default, ast.Constant):
                        calls.append((f"{path.relative_to(REPO)}:{node.lineno}", "EngineError", default.value, None))
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name not in ERROR_CLASSES:
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "code"), None)
            if isinstance(arg, ast.Constant):
                code = arg.value
            elif isinstance(arg, ast.Name) and arg.id in constants:
                code = constants[arg.id]
            elif isinstance(arg, ast.Name) and arg.id == "code":
                continue  # a helper's parameter: its default and its callers' constants are checked
            elif isinstance(arg, ast.JoinedStr):
                code = "".join(v.value for v in arg.values if isinstance(v, ast.Constant)) + "*"
            else:
                pytest.fail(f"{where}: cannot read the error code {ast.unparse(arg) if arg else None!r}")
            calls.append((where, name, code, node))
    return calls


def test_the_scan_finds_the_error_calls():
    codes = {code for _, _, code, _ in _raised_codes()}
    assert {"invalid_spec", "dataset_files", "no_gpu", "cancelled", "unreadable_raster"} <= codes


def test_every_raised_code_is_in_the_table():
    missing = []
    for where, _, code, _ in _raised_codes():
        if code.endswith("*"):  # f"connector_{kind}": some code of that family must exist
            if not any(c.startswith(code[:-1]) for c in errors.CODES):
                missing.append(f"{where}: {code}")
        elif code not in errors.CODES:  # names only: a Studio number in the source should use its name
            missing.append(f"{where}: {code}")
    assert missing == [], "codes not in engine/errors.py: " + ", ".join(missing)


def test_exit_status_of_each_raise_agrees_with_the_table():
    exits = {n: getattr(wire, n) for n in dir(wire) if n.startswith("EXIT_")}
    wrong = []
    for where, cls, code, call in _raised_codes():
        entry = errors.CODES.get(code)
        if entry is None or call is None:
            continue
        given = next((k.value for k in call.keywords if k.arg == "exit_code"), None)
        if given is not None:
            name = given.attr if isinstance(given, ast.Attribute) else getattr(given, "id", "")
            if exits.get(name) != entry.exit:
                wrong.append(f"{where}: {code} exits {name}, the table says {entry.exit}")
        elif ERROR_CLASSES[cls] is not None and ERROR_CLASSES[cls] != entry.exit:
            wrong.append(f"{where}: {cls}({code!r}) reads as exit {ERROR_CLASSES[cls]}, the table says {entry.exit}")
    assert wrong == []


def test_the_table_is_well_formed():
    for entry in errors.CODES.values():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry.code), entry.code
        assert entry.exit in wire.EXIT_CODES and entry.exit != wire.EXIT_OK
        assert entry.meaning and entry.action
    assert sorted(errors.BY_STUDIO_CODE) == ["0001", "0002", "0003", "0004", "0005", "0007", "0008", "0011", "0012"]


def test_readme_shows_the_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, "README.md lacks the error-code markers"
    shown = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert shown == errors.markdown_table().strip(), \
        "README's error table is out of date: paste `python3 -m geostudio_plugin.engine.errors` between the markers"
    for code in errors.CODES:
        assert f"`{code}`" in shown


def test_a_studio_number_becomes_its_name_and_keeps_the_number():
    error = EngineError("0002", "no label files", "check the suffix")
    assert (error.code, error.studio_code, error.exit_code) == ("dataset_files", "0002", wire.EXIT_INPUT)
    fields = error.fields()
    assert fields["code"] == "dataset_files" and fields["studio_code"] == "0002"
    named = EngineError("dataset_pairing", "unpaired")
    assert named.studio_code == "0004" and named.fields()["studio_code"] == "0004"


def test_exit_status_comes_from_the_table_unless_given():
    assert EngineError("cancelled", "stopped").exit_code == wire.EXIT_CANCELLED
    assert EngineError("no_command", "none").exit_code == wire.EXIT_USAGE
    assert EngineError("connector_timeout", "slow").exit_code == wire.EXIT_EXTERNAL
    assert EngineError("band_count", "x", exit_code=wire.EXIT_EXTERNAL).exit_code == wire.EXIT_EXTERNAL
    assert SpecError("not_in_the_table", "x").exit_code == wire.EXIT_INVALID_SPEC  # the class's default
    assert ExternalError("not_in_the_table", "x").exit_code == wire.EXIT_EXTERNAL
    assert "studio_code" not in SpecError("invalid_spec", "x").fields()
