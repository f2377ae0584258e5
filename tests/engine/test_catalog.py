"""``catalog``: Terrakit's connectors and collections, the templates and backbones, without TerraTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXIT_OK, engine_env, parse_stdout, run_ok


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> dict:
    run = run_ok("catalog", None, tmp_path_factory.mktemp("catalog") / "ws")
    assert run.of("progress")[-1]["fraction"] == 1.0
    return run.result["summary"]


def _connector(catalog: dict, ident: str) -> dict:
    matches = [c for c in catalog["connectors"] if c["id"] == ident]
    assert len(matches) == 1, f"connector {ident}: {len(matches)} entries"
    return matches[0]


def test_connectors(catalog):
    ids = {c["id"] for c in catalog["connectors"]}
    assert {"sentinelhub", "sentinel_aws", "nasa_earthdata", "IBMResearchSTAC", "TheWeatherCompany",
            "climate_data_store"} <= ids
    for connector in catalog["connectors"]:
        assert {"id", "name", "credentials", "collections"} <= connector.keys()
    assert [c["env"] for c in _connector(catalog, "sentinelhub")["credentials"]] == ["SH_CLIENT_ID", "SH_CLIENT_SECRET"]
    assert {c["collection"] for c in _connector(catalog, "sentinelhub")["collections"]} >= {"s2_l2a", "s1_grd"}
    assert _connector(catalog, "sentinel_aws")["collections"], "sentinel_aws should list its collections"


def test_sentinelhub_s2_l2a_bands_and_rgb_roles(catalog):
    (s2,) = [c for c in _connector(catalog, "sentinelhub")["collections"] if c["collection"] == "s2_l2a"]
    assert s2["modality_tag"] == "S2L2A"
    roles = {b["band_name"]: b["RGB_band"] for b in s2["bands"]}
    assert roles["B04"] == "R" and roles["B03"] == "G" and roles["B02"] == "B"
    assert sorted(r for r in roles.values() if r) == ["B", "G", "R"], "only three bands carry an RGB role"
    assert {"B08", "B11", "B12"} <= roles.keys()


def test_templates_and_backbones(catalog):
    templates = {t["id"]: t for t in catalog["templates"]}
    assert "timm_resnet_seg" in templates
    seg = templates["timm_resnet_seg"]
    assert seg["purpose"] == "Segmentation"
    assert "content_file" not in seg  # an internal detail, not part of the catalog
    assert seg["model_params"]["properties"]["runner"]["properties"]["max_epochs"]["default"] >= 1
    backbones = {b["name"]: b for b in catalog["backbones"]}
    assert "timm_resnet18" in backbones
    assert backbones["timm_resnet18"]["model_params"]["model_category"] == seg["extra_info"]["model_category"]


def test_catalog_imports_neither_torch_nor_terratorch(tmp_path: Path):
    """Run the real entry point in a fresh interpreter and list what it imported."""
    modules_file = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "from geostudio_plugin.engine.__main__ import main\n"
        f"rc = main(['--workspace', {str(tmp_path / 'ws')!r}, 'catalog'])\n"
        f"open({str(modules_file)!r}, 'w').write(json.dumps({{'rc': rc, 'modules': sorted(sys.modules)}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=engine_env(),
                          cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(modules_file.read_text())
    assert data["rc"] == EXIT_OK
    events, bad = parse_stdout(proc.stdout)
    results = [e for e in events if e["event"] == "result"]
    assert not bad and len(results) == 1 and results[0]["summary"]["connectors"]
    roots = {name.split(".")[0] for name in data["modules"]}
    assert {"geostudio_plugin", "json"} <= roots  # the list is real
    assert "geostudio_plugin.engine.catalog" in data["modules"]
    assert "torch" not in roots
    assert "terratorch" not in roots
    assert "lightning" not in roots
    assert "terrakit" not in roots  # catalog.py reads Terrakit's data file without importing it
