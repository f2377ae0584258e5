"""Build the installable plugin zip: one folder, geostudio_plugin/, holding the package plus metadata.txt,
ui/, resources/ and the engine lock file (so an installed plugin can build its engine).

Usage: python scripts/package.py [OUT_DIR]   (default dist/); prints the zip's path.
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "geostudio_plugin"
EXTRAS = ["metadata.txt", "engine-requirements.lock", "ui", "resources", "LICENSE"]
SKIP_PARTS = {"__pycache__", ".pytest_cache"}


def files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not SKIP_PARTS & set(p.parts)
                  and p.suffix not in (".pyc", ".part"))


def build(out_dir: Path) -> Path:
    meta = configparser.ConfigParser()
    meta.read(REPO / "metadata.txt")
    version = meta["general"]["version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{version}.zip"
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files(REPO / PACKAGE):
            archive.write(path, f"{PACKAGE}/{path.relative_to(REPO / PACKAGE)}")
        for extra in EXTRAS:
            for path in files(REPO / extra):
                archive.write(path, f"{PACKAGE}/{path.relative_to(REPO)}")
    tmp.replace(target)
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "dist"))
