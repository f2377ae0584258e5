"""The catalog: connectors and collections (from Terrakit), templates and backbones (data files).

Terrakit's collections and bands are read from the data file Terrakit ships
(the same file its ``list_data_connectors`` reads), without importing
Terrakit: its import takes seconds and reconfigures logging and GDAL for the
whole process. Nothing here imports TerraTorch.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from . import protocol
from .protocol import EngineError, SpecError
from .workspace import Workspace

DATA_DIR = Path(__file__).resolve().parent / "data"
TEMPLATES_DIR = DATA_DIR / "templates"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def terrakit_collections() -> list[dict[str, Any]]:
    spec = importlib.util.find_spec("terrakit")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("terrakit_missing", "Terrakit is not installed in the engine environment.",
                          "Rebuild the engine environment (GeoStudio settings > Set up engine, or `make engine`).")
    path = Path(spec.submodule_search_locations[0]) / "download" / "collections.json"
    collections = _read_json(path)
    for item in collections:  # some entries store nested lists as JSON strings
        for key in ("bands", "search", "query_options", "notes"):
            if isinstance(item.get(key), str) and item[key][:1] in "[{":
                item[key] = json.loads(item[key])
    return collections


def _collection_entry(raw: dict[str, Any]) -> dict[str, Any]:
    rgb = [b.lower() for b in raw.get("rgb_bands") or []]
    bands = []
    for band in raw.get("bands") or []:
        name = band.get("band_name", "")
        role = "RGB"[rgb.index(name.lower())] if name.lower() in rgb else None
        bands.append({
            "band_name": name, "resolution": band.get("resolution"), "description": band.get("description", ""),
            "RGB_band": role, "alt_names": band.get("alt_names", []),
        })
    return {
        "collection": raw["collection_name"],
        "long_name": raw.get("collection_long_name", ""),
        "description": raw.get("description", ""),
        "modality_tag": raw.get("modality_tag"),
        "resolution_m": raw.get("resolution_m"),
        "cloud_masking": raw.get("cloud_masking"),
        "bands": bands,
    }


def connectors() -> list[dict[str, Any]]:
    extras = _read_json(DATA_DIR / "connectors.json")["connectors"]
    by_connector: dict[str, list[dict[str, Any]]] = {}
    for raw in terrakit_collections():
        by_connector.setdefault(raw["connector"], []).append(_collection_entry(raw))
    result = []
    for extra in extras:
        entry = {k: v for k, v in extra.items() if not k.startswith("_")}
        entry["collections"] = by_connector.pop(extra["id"], [])
        result.append(entry)
    for name, collections in sorted(by_connector.items()):  # connectors Terrakit added after our data file
        result.append({"id": name, "name": name, "credentials": [], "endpoint_override": False,
                       "collections": collections})
    return result


# ---------------------------------------------------------- templates, backbones


@lru_cache(maxsize=1)
def backbones() -> list[dict[str, Any]]:
    return _read_json(DATA_DIR / "backbones.json")["backbones"]


@lru_cache(maxsize=1)
def templates() -> list[dict[str, Any]]:
    return [_read_json(path) for path in sorted(TEMPLATES_DIR.glob("*.json"))]


def find_backbone(ident: str) -> dict[str, Any]:
    for item in backbones():
        if ident in (item["name"], item["model_params"]["backbone"]):
            return item
    raise SpecError("unknown_backbone", f"base_model_id '{ident}' is not a known backbone.",
                    "Use one of: " + ", ".join(b["name"] for b in backbones()))


def find_template(ident: str) -> dict[str, Any]:
    for item in templates():
        if ident in (item["id"], item["name"]):
            return item
    raise SpecError("unknown_template", f"tune_template_id '{ident}' is not a known template.",
                    "Use one of: " + ", ".join(f"{t['id']} ({t['name']})" for t in templates()))


def template_text(template: dict[str, Any]) -> str:
    return (TEMPLATES_DIR / template["content_file"]).read_text(encoding="utf-8")


def compatible(template: dict[str, Any], backbone: dict[str, Any]) -> bool:
    """The Studio's rule: template and backbone share a model category."""
    return template["extra_info"]["model_category"] == backbone["model_params"]["model_category"]


def build_catalog(workspace: Optional[Workspace] = None) -> dict[str, Any]:
    return {
        "connectors": connectors(),
        "templates": [{k: v for k, v in t.items() if k != "content_file"} for t in templates()],
        "backbones": backbones(),
    }


def run(spec: Any, workspace: Workspace) -> None:
    protocol.progress("catalog", 0.1, "reading connectors and collections")
    catalog = build_catalog(workspace)
    n_collections = sum(len(c["collections"]) for c in catalog["connectors"])
    protocol.progress("catalog", 1.0, f"{len(catalog['connectors'])} connectors, {n_collections} collections")
    protocol.result(outputs={}, summary=catalog)
