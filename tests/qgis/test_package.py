"""`make package` builds a zip that installs into a fresh QGIS profile and runs there (real QGIS, Xvfb)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

ALGORITHMS = ["geostudio:check_availability", "geostudio:export_model", "geostudio:fetch_imagery",
              "geostudio:infer_area", "geostudio:infer_raster", "geostudio:list_collections",
              "geostudio:onboard_dataset", "geostudio:prescan_dataset", "geostudio:tune_model"]


def test_zip_holds_one_plugin_folder_with_everything(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from package import build

    archive = build(tmp_path)
    names = zipfile.ZipFile(archive).namelist()
    assert {n.split("/")[0] for n in names} == {"geostudio_plugin"}
    for required in ("geostudio_plugin/__init__.py", "geostudio_plugin/metadata.txt",
                     "geostudio_plugin/engine-requirements.lock", "geostudio_plugin/ui/inference_dock.ui",
                     "geostudio_plugin/resources/icons/geostudio.svg", "geostudio_plugin/engine/__main__.py",
                     "geostudio_plugin/engine/data/templates/timm_resnet_seg.yaml.j2"):
        assert required in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def install_zip_in_a_fresh_profile(tmp_path: Path) -> tuple[Path, Path]:
    """Build the zip and unpack it as QGIS's plugin manager would, enabled: (profiles path, plugins folder)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from package import build

    archive = build(tmp_path / "dist")
    profiles = tmp_path / "qgis"  # QGIS keeps profiles in <profiles-path>/profiles/<name>
    plugins_dir = profiles / "profiles" / "default" / "python" / "plugins"
    plugins_dir.mkdir(parents=True)
    zipfile.ZipFile(archive).extractall(plugins_dir)
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ngeostudio_plugin=true\n")
    return profiles, plugins_dir


def qgis_process_command() -> str | None:
    """Debian's `qgis_process` wrapper adds --noversioncheck, which 3.22's executor rejects: use the binary."""
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.mark.skipif(qgis_process_command() is None, reason="needs qgis_process (Debian package qgis)")
def test_qgis_process_lists_the_provider_of_the_installed_zip(tmp_path):
    profiles, _ = install_zip_in_a_fresh_profile(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QGIS_")},
           "QGIS_CUSTOM_CONFIG_PATH": str(profiles), "QT_QPA_PLATFORM": "offscreen"}
    listed = subprocess.run([qgis_process_command(), "--json", "list"], capture_output=True, text=True, env=env,
                            timeout=180)
    assert listed.returncode == 0, listed.stderr[-2000:]
    providers = json.loads(listed.stdout[listed.stdout.index("{"):])["providers"]
    assert "geostudio" in providers, sorted(providers)
    assert sorted(providers["geostudio"]["algorithms"]) == ALGORITHMS
    assert providers["geostudio"]["name"] == "GeoStudio"


@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None,
                    reason="needs the QGIS desktop and xvfb-run (make deps installs them)")
def test_installed_zip_starts_in_a_fresh_profile(tmp_path):
    profiles, plugins_dir = install_zip_in_a_fresh_profile(tmp_path)
    out = tmp_path / "check.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
    env.update(CHECK_OUT=str(out), QT_QPA_PLATFORM="xcb")
    # QGIS versions tested at the same time share the network namespace, so their X servers' abstract sockets
    # would clash on xvfb-run's first free display; scripts/qgis_matrix.py gives each version its own range
    first_display = os.environ.get("GEOSTUDIO_TEST_XVFB_SERVERNUM", "99")
    proc = subprocess.Popen(["xvfb-run", "-a", "-n", first_display, "-s", "-screen 0 1280x900x24", "qgis", "--nologo", "--noversioncheck",
                             "--profiles-path", str(profiles), "--code",
                             str(Path(__file__).with_name("packaged_check.py"))],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=360)  # a hang bound: QGIS start and the engine catalog on a loaded 2-core machine
    finally:  # never leave a QGIS or Xvfb behind, even when the check hangs
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    report = json.loads(out.read_text())
    assert report.get("error") is None, report
    assert report["active"] is True
    assert report["loaded_from"].startswith(str(plugins_dir))
    assert report["docks"] == {"connectors": True, "onboarding": True, "tuning": True, "inference": True}
    assert report["algorithms"] == ALGORITHMS
    assert report["catalog_connectors"] >= 6
    assert report["heavy_modules"] == []


def test_metadata_claims_exactly_the_qgis_versions_make_test_runs():
    """qgisMinimumVersion/qgisMaximumVersion are the ends of the matrix `make test` runs (QGIS_VERSIONS)."""
    import configparser
    import re

    versions = re.search(r"^QGIS_VERSIONS := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split()
    ordered = sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
    metadata = configparser.ConfigParser()
    metadata.read(REPO / "metadata.txt")
    assert (metadata["general"]["qgisMinimumVersion"], metadata["general"]["qgisMaximumVersion"]) == \
        (ordered[0], ordered[-1])
    known = subprocess.run([str(REPO / "scripts" / "qgis-root"), "versions"], capture_output=True, text=True,
                           check=True).stdout.split()[::2]
    assert set(versions) <= set(known), "every version of the matrix has a Debian suite in scripts/qgis-root"
    readme = (REPO / "README.md").read_text()
    for version in versions:
        assert f"| {version}." in readme, f"the README's QGIS matrix lists {version}"
