"""`make screenshot`: the real QGIS desktop under Xvfb with the packaged plugin, one PNG per dock.

Installs dist/geostudio_plugin-*.zip into a throwaway profile, opens the demo project
(demo-output/geostudio_demo.qgz, from `make demo`) with its workspace, opens each dock and saves the
main window to docs/screenshots/<dock>.png. The QGIS-side script is screenshot_in_qgis.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from package import build  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "support"))
from local_stac import LocalStac  # noqa: E402  (a real STAC API on loopback, for the Connectors picture)


def engine_python() -> Path:
    sys.path.insert(0, str(REPO))
    from geostudio_plugin.engine_runtime import resolve_engine_python

    python = resolve_engine_python()
    if python is None:
        sys.exit("The engine is not built: run `make engine`.")
    return python


def main() -> None:
    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    (REPO / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="geostudio-shot-") as tmp, \
            LocalStac(engine_python(), Path(tmp) / "stac") as stac:
        profiles = Path(tmp) / "qgis"
        plugins = profiles / "profiles" / "default" / "python" / "plugins"
        plugins.mkdir(parents=True)
        zipfile.ZipFile(build(Path(tmp) / "dist")).extractall(plugins)
        ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True)
        workspace = REPO / "demo-output" / "workspace"
        ini.write_text("[PythonPlugins]\ngeostudio_plugin=true\n\n[GeoStudio]\n"
                       f"workspace={workspace}\nconnectors\\sentinel_aws\\endpoint={stac.stac_url}\n\n"
                       "[qgis]\ncheckVersion=false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
        env.update(SHOT_DIR=str(out), SHOT_LOG=str(REPO / "build" / "screenshot.log"), SHOT_PROJECT=str(REPO / "demo-output" / "geostudio_demo.qgz"),
                   SHOT_HOLDOUT=str(REPO / "resources/sample_data/sen1floods11/holdout/USA_905409_S1Hand.tif"))
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--nologo", "--noversioncheck",
               "--profiles-path", str(profiles), "--code", str(REPO / "scripts" / "screenshot_in_qgis.py")]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, start_new_session=True)
        try:
            proc.wait(timeout=400)
        finally:  # never leave QGIS or Xvfb running
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    shots = sorted(out.glob("*.png"))
    if not shots:
        sys.exit("no screenshot was written")
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    if shutil.which("xvfb-run") is None:
        sys.exit("xvfb-run is missing: run `make deps`")
    main()
