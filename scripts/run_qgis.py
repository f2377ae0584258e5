"""`make run`: install the packaged plugin into a development profile (build/qgis-profile) and start QGIS.

The profile is kept between runs (your layout and settings stay); the plugin folder is replaced each time.
"""

from __future__ import annotations

import configparser
import os
import shutil
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from package import build  # noqa: E402

PROFILES = REPO / "build" / "qgis-profile"


def main() -> None:
    profile = PROFILES / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    shutil.rmtree(plugins / "geostudio_plugin", ignore_errors=True)
    plugins.mkdir(parents=True, exist_ok=True)
    zipfile.ZipFile(build(REPO / "dist")).extractall(plugins)
    ini_path = profile / "QGIS" / "QGIS3.ini"
    ini_path.parent.mkdir(parents=True, exist_ok=True)
    ini = configparser.RawConfigParser()
    ini.optionxform = str  # QGIS keys are case-sensitive
    ini.read(ini_path)
    if not ini.has_section("PythonPlugins"):
        ini.add_section("PythonPlugins")
    ini.set("PythonPlugins", "geostudio_plugin", "true")
    with ini_path.open("w") as handle:
        ini.write(handle, space_around_delimiters=False)
    qgis = shutil.which("qgis")
    if qgis is None:
        sys.exit("QGIS is not installed: run `make deps`.")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        sys.exit("No display: `make run` starts the QGIS desktop (use `xvfb-run make run` on a headless machine).")
    print(f"Starting QGIS with GeoStudio from {plugins} (profile {PROFILES})")
    os.execv(qgis, [qgis, "--profiles-path", str(PROFILES)])


if __name__ == "__main__":
    main()
