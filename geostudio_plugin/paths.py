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


def metadata(key: str) -> str:
    """A value of metadata.txt's [general] section (beside the package when installed, the repo's otherwise)."""
    import configparser

    meta = configparser.ConfigParser()
    path = PACKAGE_DIR / "metadata.txt"
    meta.read(path if path.is_file() else PACKAGE_DIR.parent / "metadata.txt", encoding="utf-8")
    return meta.get("general", key, fallback="")


def help_url(section: str = "") -> str:
    """The README (the plugin's homepage in metadata.txt) at a section's anchor."""
    home = metadata("homepage") or metadata("repository")
    return f"{home}#{section}" if section else home


def icon_path(name: str) -> str:
    return str(resource("icons", name))
