"""`make screenshot`: the real QGIS desktop under Xvfb with the packaged plugin, one PNG per dock.

Installs dist/geostudio_plugin-*.zip into a throwaway profile, opens the demo project
(demo-output/geostudio_demo.qgz, from `make demo`) with its workspace, opens each dock and saves the
main window to docs/screenshots/<dock>.png. The QGIS-side script is screenshot_in_qgis.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from package import build  # noqa: E402


def main() -> None:
    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="geostudio-shot-") as tmp:
        profiles = Path(tmp) / "qgis"
        plugins = profiles / "profiles" / "default" / "python" / "plugins"
        plugins.mkdir(parents=True)
        zipfile.ZipFile(build(Path(tmp) / "dist")).extractall(plugins)
        ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True)
        workspace = REPO / "demo-output" / "workspace"
        ini.write_text("[PythonPlugins]\ngeostudio_plugin=true\n\n[GeoStudio]\n"
                       f"workspace={workspace}\n\n[qgis]\ncheckVersion=false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
        env.update(SHOT_DIR=str(out), SHOT_PROJECT=str(REPO / "demo-output" / "geostudio_demo.qgz"),
                   SHOT_HOLDOUT=str(REPO / "resources/sample_data/sen1floods11/holdout/USA_905409_S1Hand.tif"))
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--nologo", "--noversioncheck",
               "--profiles-path", str(profiles), "--code", str(REPO / "scripts" / "screenshot_in_qgis.py")]
        subprocess.run(cmd, env=env, timeout=300, check=False, cwd=tmp)
    shots = sorted(out.glob("*.png"))
    if not shots:
        sys.exit("no screenshot was written")
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    if shutil.which("xvfb-run") is None:
        sys.exit("xvfb-run is missing: run `make deps`")
    main()
