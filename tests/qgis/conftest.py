"""QGIS-side fixtures (pytest-qgis, headless). The plugin is imported inside fixtures, never at module
level: pytest-qgis 2.1 starts QGIS in pytest_configure, after this file is imported."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
sys.path.insert(0, str(REPO))

# Keep the developer's own QGIS profile and GeoStudio data out of the tests.
os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", tempfile.mkdtemp(prefix="geostudio-qgis-profile-"))
# Nor write into the clone: QGIS 3.40+ saves the statistics of a layer it styles as <file>.aux.xml next to the
# file (GDAL's PAM), which put files beside the bundled samples. (The engine drops GDAL_* variables.)
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")
# WARM_ENGINE_IN_TESTS: the QGIS suite runs its engine jobs as their own processes (the fallback path), and the warm
# engine is proved by its own tests (tests/qgis/test_warm_engine.py, tests/engine/test_engine_server.py). With it
# on everywhere, the tests' changing environments (a fake hub, endpoints) restarted the server, 10-20 s of imports
# each, and a first job's refusal waited for the server's imports (test_first_hour's 15 s bound).
os.environ.setdefault("GEOSTUDIO_WARM_ENGINE", "0")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "training: trains a model for real beyond the session's one (engine work, the same on every QGIS "
        "version): scripts/qgis_matrix.py runs these on the machine's own QGIS only")
    config.addinivalue_line(
        "markers", "engine_bound: most of its time is a long engine job (importing a model or a template builds "
        "it), the same on every QGIS version: scripts/qgis_matrix.py runs these on the machine's own QGIS only")


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.05) -> None:
    """Spin the Qt event loop until predicate() is true (task signals and finished() need it)."""
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        QgsApplication.processEvents()
        time.sleep(interval)


@pytest.fixture(scope="session")
def engine_python() -> Path:
    from geostudio_plugin import engine_runtime

    python = engine_runtime.resolve_engine_python(os.environ.get("GEOSTUDIO_ENGINE_PYTHON", ""))
    if python is None:
        pytest.fail("The engine environment is not built: run `make engine` (make test does it first).")
    return python


@pytest.fixture(scope="session")
def session_workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture()
def workspace(session_workspace: Path, engine_python: Path):
    """Point the plugin's settings at the test workspace and the built engine."""
    from geostudio_plugin import settings

    settings.set_workspace(str(session_workspace))
    settings.set_engine_python_override(str(engine_python))
    settings.set_warm_engine(False)  # see WARM_ENGINE_IN_TESTS
    yield session_workspace


@pytest.fixture()
def extended_iface(qgis_iface):
    """pytest-qgis's iface stub lacks a few calls real QGIS has; add them. Its message bar also takes QGIS's
    pushMessage(title, text, showMore, level, duration) and keeps each message's details in ``bar.details``."""
    from qgis.core import Qgis

    bar = qgis_iface.messageBar()
    bar.details = []  # (title, text, showMore, level) of every message pushed

    def push_message(title, text, *rest):
        show_more = rest[0] if rest and isinstance(rest[0], str) else ""
        rest = rest[1:] if rest and isinstance(rest[0], str) else rest
        level = rest[0] if rest else Qgis.MessageLevel.Info
        bar.messages[level].append(f"{title}:{text}")
        bar.details.append((title, text, show_more, level))

    bar.pushMessage = push_message
    window = qgis_iface.mainWindow()
    qgis_iface.addDockWidget = window.addDockWidget
    qgis_iface.removeDockWidget = window.removeDockWidget
    window.show()
    return qgis_iface


@pytest.fixture()
def plugin(extended_iface, workspace):
    import geostudio_plugin

    instance = geostudio_plugin.classFactory(extended_iface)
    instance.initGui()
    yield instance
    instance.unload()


@pytest.fixture(scope="session")
def trained_tune(session_workspace: Path, engine_python: Path) -> dict:
    """One tiny real model per session: onboard the sample chips, fine-tune ResNet-18 for one epoch."""
    from geostudio_plugin.engine_client import EngineJob

    onboard = EngineJob("onboard", sample_onboarding_payload(chip_size=128), python=engine_python,
                        workspace=session_workspace).run()
    assert onboard.ok, onboard.error_text()
    tune = EngineJob("tune", tiny_tune_payload(onboard.result["summary"]["dataset_id"]), python=engine_python,
                     workspace=session_workspace).run()
    assert tune.ok, tune.error_text()
    return json.loads((Path(tune.result["outputs"]["tune_dir"]) / "tune.json").read_text())


def sample_onboarding_payload(chip_size: int | None = None, name: str = "Sen1Floods11 water") -> dict:
    payload = json.loads((REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    payload["dataset_name"] = name
    payload["dataset_url"] = str(SAMPLES / "train")
    if chip_size:
        payload["onboarding_options"]["chip_size"] = chip_size
    return payload


def tiny_tune_payload(dataset_id: str, epochs: int = 1, name: str = "tiny-test") -> dict:
    return {"name": name, "dataset_id": dataset_id, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg",
            "model_parameters": {"runner": {"max_epochs": epochs}, "data": {"batch_size": 4, "crop_size": 64},
                                 "model": {"decode_head": {"channels": 32}}, "optimizer": {"lr": 0.001}},
            "train_options": {"accelerator": "cpu"}}


@pytest.fixture(scope="session")
def marida_stac(engine_python, tmp_path_factory):
    """The loopback STAC API serving the bundled MARIDA patches (tests/support/local_stac.py), one per session:
    the area-inference tests and the Processing Data tests share it. Started with the engine's Python (its
    rustac and RangeHTTPServer live there)."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from local_stac import LocalStac

    with LocalStac(engine_python, tmp_path_factory.mktemp("marida-localstac")) as server:
        yield server


@pytest.fixture(scope="session")
def marida_workspace(tmp_path_factory) -> Path:
    """A workspace of its own for the MARIDA model, so the session's workspace keeps the models other tests
    count on."""
    return tmp_path_factory.mktemp("area-workspace")


@pytest.fixture(scope="session")
def marida_tune(marida_workspace, engine_python) -> str:
    """MARIDA onboarded with the STAC collection's band names and a tiny ResNet-18 tuned for one epoch: a model
    whose input the loopback STAC server serves. Trained once per session (the area-inference tests, the
    Processing model and qgis_process tests use it)."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from payloads import marida_stac_payload

    from geostudio_plugin.engine_client import EngineJob

    onboard = EngineJob("onboard", marida_stac_payload(), python=engine_python, workspace=marida_workspace).run()
    assert onboard.ok, onboard.error_text()
    tune = EngineJob("tune", tiny_tune_payload(onboard.result["summary"]["dataset_id"], name="marida-area"),
                     python=engine_python, workspace=marida_workspace).run()
    assert tune.ok, tune.error_text()
    return tune.result["summary"]["tune_id"]
