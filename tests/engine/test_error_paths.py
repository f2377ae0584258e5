"""Error paths: secrets that reach an error through a URL, and one test per error code no other test reaches.

Each case pins one code and one exit status (those of geostudio_plugin/engine/errors.py). Services are
loopback servers; nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import rasterio
import rasterio.warp

from conftest import (EXIT_EXTERNAL, EXIT_INPUT, EXIT_INVALID_SPEC, HOLDOUT_IMAGE, engine_command, engine_env,
                      leftovers, parse_stdout, run_engine, tune_payload)


class Loopback:
    """An HTTP server on 127.0.0.1 that answers every request (CONNECT included) with one status."""

    def __init__(self, status: int) -> None:
        self.requests: list[str] = []
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                loopback.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b'{"error": "injected"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_CONNECT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server_500():
    server = Loopback(500)
    yield server
    server.close()


@pytest.fixture()
def server_401():
    server = Loopback(401)
    yield server
    server.close()


@pytest.fixture()
def quick_http(monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_HTTP_TIMEOUT", "3")
    monkeypatch.setenv("GEOSTUDIO_HTTP_RETRIES", "1")
    monkeypatch.setenv("GEOSTUDIO_HTTP_BACKOFF", "0.1")
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


IBM_CREDENTIALS = ("CLIENT_ID", "CLIENT_SECRET", "APPID_USERNAME", "APPID_PASSWORD")


def ibm_credentials(monkeypatch, issuer: str) -> dict[str, str]:
    values = {"APPID_ISSUER": issuer, **{name: f"{name.lower()}-CANARY-{n}" for n, name in enumerate(IBM_CREDENTIALS)}}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


# ------------------------------------------------------------------------------------------- secret leaks


@pytest.mark.parametrize("key", [
    "twc-key-CANARY-4f1b",
    "k3y/CANARY+91=",  # URL-encoded in the query string: apiKey=k3y%2FCANARY%2B91%3D
], ids=["plain-key", "key-that-url-encoding-changes"])
def test_an_api_key_in_a_url_is_redacted_on_the_error_path(ws_dir, server_500, quick_http, monkeypatch, key):
    """The Weather Company's key travels as ?apiKey=...; the (loopback) proxy answers 500, so the failing URL,
    key included, ends up in the exception text (error details) and in urllib3's retry warning (the log)."""
    from urllib.parse import quote, quote_plus

    monkeypatch.setenv("THE_WEATHER_COMPANY_API_KEY", key)
    monkeypatch.setenv("HTTPS_PROXY", server_500.url)
    monkeypatch.setenv("https_proxy", server_500.url)
    run = run_engine("check", {"connector": "TheWeatherCompany", "timeout_s": 3}, ws_dir, timeout=60)
    # the code depends on how a proxy's 500 is classified (server error or unreachable); the exit status does not
    assert run.returncode == EXIT_EXTERNAL, run.describe()
    assert run.error["code"].startswith("connector_")
    assert any(r.startswith("CONNECT api.weather.com:443") for r in server_500.requests), server_500.requests
    for form in {key, quote(key, safe=""), quote_plus(key)}:
        assert form not in run.stdout, f"the key ({form}) is in the event stream"
        assert form not in run.stderr, f"the key ({form}) is in the engine log"
    # the test reaches the path it is about: the URL with the (redacted) key is in the error details
    assert "apiKey=***" in json.dumps(run.error), run.error


@pytest.mark.parametrize("command, code", [("check", "connector_http_error"), ("search", "connector_server")])
def test_credentials_in_an_issuer_url_are_redacted_in_events_and_log(ws_dir, server_500, quick_http, monkeypatch,
                                                                     command, code):
    """IBM Research STAC's token URL is a credential (APPID_ISSUER) and may carry a tenant token; the server
    answers 500. `check` names the failing URL in its error; in `search` Terrakit asks for the token itself and
    logs the failed request, URL included, to the engine log."""
    token = "tenant-CANARY-0c9e"
    values = ibm_credentials(monkeypatch, f"{server_500.url}/oauth/{token}")
    spec = {"connector": "IBMResearchSTAC", "timeout_s": 3} if command == "check" else {
        "connector": "IBMResearchSTAC", "collection": "marida-ndvi", "bbox": [-88.19, 15.77, -88.15, 15.84],
        "date_start": "2018-08-01", "date_end": "2018-09-30"}
    run = run_engine(command, spec, ws_dir, timeout=60)
    assert run.returncode == EXIT_EXTERNAL, run.describe()
    assert run.error["code"] == code
    assert f"POST /oauth/{token}/token" in server_500.requests  # the secrets were sent where they belong
    for value in [token, *values.values()]:
        assert value not in run.stdout, f"{value} is in the event stream"
        assert value not in run.stderr, f"{value} is in the engine log"
    # the test reaches the path it is about: the failing URL is reported, redacted
    assert "***/token" in json.dumps(run.error)
    if command == "search":
        assert "url=***/token" in run.stderr, run.stderr[-2000:]


# ---------------------------------------------------------------------------------- codes no test reached


@pytest.fixture()
def ws_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def test_credentials_rejected(ws_dir, server_401, quick_http, monkeypatch):
    ibm_credentials(monkeypatch, f"{server_401.url}/oauth")
    run = run_engine("check", {"connector": "IBMResearchSTAC", "timeout_s": 3}, ws_dir, timeout=60)
    assert run.returncode == EXIT_EXTERNAL, run.describe()
    assert run.error["code"] == "credentials_rejected"
    assert "401" in run.error["message"] and "Credentials" in run.error["hint"]


def test_workspace_unusable(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    proc = subprocess.run(engine_command(blocker / "workspace", "list"), capture_output=True, text=True,
                          env=engine_env(), cwd=str(tmp_path), timeout=120)
    events, bad = parse_stdout(proc.stdout)
    assert not bad
    assert proc.returncode == EXIT_INPUT, proc.stderr[-2000:]
    (error,) = [e for e in events if e["event"] == "error"]
    assert error["code"] == "workspace_unusable"
    assert str(blocker / "workspace") in error["message"] and "--workspace" in error["hint"]
    assert blocker.read_text() == "not a folder"


@pytest.fixture()
def tune_workspace(trained, tmp_path) -> tuple[Path, str]:
    """A fresh workspace holding a copy of the session's dataset: tune errors must leave it as it was."""
    workspace = tmp_path / "ws"
    dataset_id = trained["dataset"]["dataset_id"]
    shutil.copytree(trained["dataset_dir"], workspace / "datasets" / dataset_id)
    return workspace, dataset_id


def _tune_error(workspace: Path, payload: dict) -> dict:
    run = run_engine("tune", payload, workspace)
    assert run.result is None
    assert leftovers(workspace, "tunes") == []
    return run


def test_unknown_backbone(tune_workspace):
    workspace, dataset_id = tune_workspace
    run = _tune_error(workspace, {**tune_payload(dataset_id), "base_model_id": "no_such_backbone"})
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "unknown_backbone"
    assert "no_such_backbone" in run.error["message"] and "timm_resnet18" in run.error["hint"]


def test_unknown_template(tune_workspace):
    workspace, dataset_id = tune_workspace
    run = _tune_error(workspace, {**tune_payload(dataset_id), "tune_template_id": "no_such_template"})
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "unknown_template"
    assert "no_such_template" in run.error["message"] and "timm_resnet_seg" in run.error["hint"]


def test_unknown_parameter(tune_workspace):
    workspace, dataset_id = tune_workspace
    payload = tune_payload(dataset_id)
    payload["model_parameters"]["runner"]["max_epoch"] = 3  # a typo of max_epochs
    run = _tune_error(workspace, payload)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "unknown_parameter"
    assert "model_parameters.runner.max_epoch" in run.error["message"] and "max_epochs" in run.error["hint"]


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


needs_no_gpu = pytest.mark.skipif("_cuda_visible()", reason="a GPU is visible: no_gpu cannot happen here")


@needs_no_gpu
@pytest.mark.parametrize("setting", [{"device": "cuda"}, {"train_options": {"accelerator": "gpu"}}],
                         ids=["device-cuda", "legacy-accelerator-gpu"])
def test_no_gpu_for_tuning(tune_workspace, setting):
    workspace, dataset_id = tune_workspace
    payload = {**tune_payload(dataset_id), **setting}
    run = _tune_error(workspace, payload)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "no_gpu" and "cuda" in run.error["message"]


@needs_no_gpu
def test_no_gpu_for_inference(trained):
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").glob("*"))
    run = run_engine("infer", {"fine_tuning_id": trained["tune"]["tune_id"], "device": "cuda",
                               "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}}, workspace)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "no_gpu" and "cuda" in run.error["message"]
    assert sorted(p.name for p in (workspace / "inferences").glob("*")) == before
    assert leftovers(workspace) == []


def _holdout_variant(target: Path, **changes) -> Path:
    """A copy of the holdout chip with profile changes (``crs=None``) or fewer bands (``bands=1``)."""
    with rasterio.open(HOLDOUT_IMAGE) as src:
        bands = changes.pop("bands", src.count)
        data, profile = src.read(list(range(1, bands + 1))), src.profile.copy()
    profile.update(count=bands, **changes)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


def _infer_error(trained, path: Path, **spatial) -> object:
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").glob("*"))
    run = run_engine("infer", {"fine_tuning_id": trained["tune"]["tune_id"], "device": "cpu",
                               "spatial_domain": {"urls": [str(path)], **spatial}}, workspace)
    assert run.result is None
    assert sorted(p.name for p in (workspace / "inferences").glob("*")) == before
    assert leftovers(workspace) == []
    return run


def test_band_count(trained, tmp_path):
    one_band = _holdout_variant(tmp_path / "one_band.tif", bands=1)
    run = _infer_error(trained, one_band)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "band_count"
    assert str(one_band) in run.error["message"] and "1 band(s)" in run.error["message"]


def test_no_crs(trained, tmp_path):
    no_crs = _holdout_variant(tmp_path / "no_crs.tif", crs=None)
    with rasterio.open(HOLDOUT_IMAGE) as src:
        left, bottom, right, top = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    run = _infer_error(trained, no_crs, bbox=[[left, bottom, (left + right) / 2, top]])
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "no_crs" and str(no_crs) in run.error["message"]


def test_checkpoint_mismatch(trained, tmp_path):
    """A tune folder whose checkpoint was replaced by weights of another shape."""
    import torch

    workspace = tmp_path / "ws"
    tune_dir = workspace / "tunes" / trained["tune_dir"].name
    shutil.copytree(trained["tune_dir"], tune_dir)
    checkpoint = tune_dir / trained["tune"]["checkpoint"]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    weights = state.get("state_dict", state)
    kept = {k: v for k, v in weights.items() if not k.startswith("model.encoder")}  # the backbone is gone
    assert len(kept) < len(weights)
    torch.save({"state_dict": kept}, checkpoint)
    run = run_engine("infer", {"fine_tuning_id": tune_dir.name, "device": "cpu",
                               "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}}, workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "checkpoint_mismatch" and tune_dir.name in run.error["message"]
    assert not any((workspace / "inferences").glob("*")) and leftovers(workspace) == []
