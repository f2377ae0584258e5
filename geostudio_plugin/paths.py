"""Where ``ui/`` and ``resources/`` are: inside the package when installed from the zip,
beside it in a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _top(name: str) -> Path:
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


def ui_file(name: str) -> Path:
    return _top("ui") / name


def resource(*parts: str) -> Path:
    return _top("resources").joinpath(*parts)


def icon_path(name: str) -> str:
    return str(resource("icons", name))
