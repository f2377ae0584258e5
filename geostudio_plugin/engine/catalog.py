"""The catalog: connectors and collections (from Terrakit), templates and backbones (data files).

Terrakit's collections and bands are read from the data file Terrakit ships
(the same file its ``list_data_connectors`` reads), without importing
Terrakit: its import takes seconds and reconfigures logging and GDAL for the
whole process. Nothing here imports TerraTorch or the connectors: this module is
data only; the ``catalog`` command (``catalog_command``) adds the connectors'
access checks and discovered collections.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

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


def _collection_entry(raw: dict[str, Any], facts: Optional[dict[str, Any]] = None, source: str = "terrakit") -> dict[str, Any]:
    raw = {**raw, **{k: v for k, v in (facts or {}).items() if k != "description_prefix"}}
    rgb = [b.lower() for b in raw.get("rgb_bands") or []]
    bands = []
    for band in raw.get("bands") or []:
        name = band.get("band_name", "")
        role = "RGB"[rgb.index(name.lower())] if name.lower() in rgb else None
        bands.append({
            "band_name": name, "resolution": band.get("resolution"), "description": band.get("description", ""),
            "RGB_band": role, "alt_names": band.get("alt_names", []),
            **({"scale_factor": band["scale_factor"]} if band.get("scale_factor") is not None else {}),
        })
    cloud = raw.get("cloud_masking") or {}
    return {
        "collection": raw["collection_name"],
        "long_name": raw.get("collection_long_name", ""),
        "description": (facts or {}).get("description_prefix", "") + raw.get("description", ""),
        "modality_tag": raw.get("modality_tag"),
        "resolution_m": raw.get("resolution_m"),
        "cloud_mask_band": cloud.get("band"),
        "cloud_masking": cloud or None,
        "bands": bands,
        "source": source,
    }


def connector_facts() -> list[dict[str, Any]]:
    return _read_json(DATA_DIR / "connectors.json")["connectors"]


def user_collections(workspace: Optional[Workspace]) -> list[dict[str, Any]]:
    """Collections a user added in <workspace>/catalog/collections.json (Terrakit's collections.json shape)."""
    if workspace is None:
        return []
    path = workspace.catalog_dir / "collections.json"
    if not path.is_file():
        return []
    try:
        data = _read_json(path)
    except ValueError as exc:
        raise EngineError("catalog_file_invalid", f"{path} is not valid JSON: {exc}.",
                          "Fix the file or remove it; it lists extra collections for the catalog.") from None
    entries = data.get("collections", data) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise EngineError("catalog_file_invalid", f"{path} holds {type(entries).__name__}, not a list of collections.",
                          "Give a JSON list of collections (or {\"collections\": [...]}), or remove the file.")
    problems = [i for i, e in enumerate(entries) if not isinstance(e, dict) or not e.get("connector")
                or not e.get("collection_name")]
    if problems:
        raise EngineError("catalog_file_invalid", f"{path}: entries {problems} lack 'connector' or 'collection_name'.",
                          "Each added collection needs at least connector, collection_name and bands.")
    return entries


def connectors(workspace: Optional[Workspace] = None,
               discovered: Optional[dict[str, list[dict[str, Any]]]] = None) -> list[dict[str, Any]]:
    by_connector: dict[str, list[dict[str, Any]]] = {}
    facts = {c["id"]: c.get("collection_facts", {}) for c in connector_facts()}
    for raw in terrakit_collections():
        connector = raw["connector"]
        by_connector.setdefault(connector, []).append(
            _collection_entry(raw, facts.get(connector, {}).get(raw["collection_name"])))
    for raw in user_collections(workspace):
        by_connector.setdefault(raw["connector"], []).append(_collection_entry(raw, source="workspace"))
    for connector, entries in (discovered or {}).items():
        by_connector.setdefault(connector, []).extend(entries)
    result = []
    for extra in connector_facts():
        entry = {k: v for k, v in extra.items() if not k.startswith("_") and k != "collection_facts"}
        entry["collections"] = by_connector.pop(extra["id"], [])
        result.append(entry)
    for name, collections in sorted(by_connector.items()):  # connectors Terrakit added after our data file
        result.append({"id": name, "name": name, "credentials": [], "endpoint_override": False,
                       "collections": collections})
    return result


# ---------------------------------------------------------- templates, backbones


TEST_BACKBONES_ENV = "GEOSTUDIO_ALLOW_TEST_BACKBONES"  # "1": the tests' shrunk backbones are accepted too


@lru_cache(maxsize=1)
def _backbones_file() -> dict[str, Any]:
    return _read_json(DATA_DIR / "backbones.json")


def backbones() -> list[dict[str, Any]]:
    """The Studio's backbones, as the catalog lists them (never the test-only ones)."""
    return _backbones_file()["backbones"]


def test_backbones() -> list[dict[str, Any]]:
    """Shrunk backbones for CPU tests; accepted by ``find_backbone`` only with GEOSTUDIO_ALLOW_TEST_BACKBONES=1."""
    return _backbones_file().get("test_backbones", [])


def band_aliases() -> dict[str, list[str]]:
    """Canonical band name (TerraTorch's HLS names, VV, VH, DEM) -> the names datasets give it."""
    return _backbones_file()["band_aliases"]


@lru_cache(maxsize=1)
def templates() -> list[dict[str, Any]]:
    return [_read_json(path) for path in sorted(TEMPLATES_DIR.glob("*.json"))]


def find_backbone(ident: str) -> dict[str, Any]:
    pool = backbones() + (test_backbones() if os.environ.get(TEST_BACKBONES_ENV) == "1" else [])
    for item in pool:
        if ident in (item["name"], item["model_params"]["backbone"]):
            return item
    raise SpecError("unknown_backbone", f"base_model_id '{ident}' is not a known backbone.",
                    "Use one of: " + ", ".join(b["name"] for b in backbones()))


def _name_key(name: str) -> str:
    """Template names compared without case, spaces or colons ("terramind Segmentation", "terramind : Segmentation")."""
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == "_")


# User-defined templates live in the workspace: <workspace>/templates/<id>/template.json (the Studio's TaskIn
# shape, ``user_defined: true``, its own parameter schema, often empty) + content.yaml.j2 (``tuning/user_templates``
# imports, validates and exports them). They render with the same Jinja variables as the built-ins: their
# parameters are the built-in groups (data, model, runner, optimizer, ...) with the built-in defaults of their
# purpose, overlaid with the template's own schema, so ``{{ runner.max_epochs }}`` works in any template.
USER_TEMPLATE_RECORD = "template.json"
USER_TEMPLATE_CONTENT = "content.yaml.j2"
USER_BASE_SCHEMA = {"Regression": "prithvi_reg", "Segmentation": "timm_resnet_seg", "Other": "timm_resnet_seg"}


def _merge_schema(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``: object groups merge property by property, a leaf of ``own`` replaces base's."""
    out = {**base, **{k: v for k, v in own.items() if k != "properties"}}
    props = dict(base.get("properties", {}))
    for key, prop in (own.get("properties") or {}).items():
        if prop.get("type") == "object" and props.get(key, {}).get("type") == "object":
            props[key] = _merge_schema(props[key], prop)
        else:
            props[key] = prop
    out["properties"] = props
    return out


def user_template_schema(own: dict[str, Any], purpose: str) -> dict[str, Any]:
    """The schema a user template's parameters are checked and rendered with (see above)."""
    base = next(t for t in templates() if t["id"] == USER_BASE_SCHEMA.get(purpose, "timm_resnet_seg"))
    return _merge_schema(base["model_params"], own or {})


def user_templates(workspace: Optional[Workspace]) -> list[dict[str, Any]]:
    """The workspace's user-defined templates (their records, as stored), oldest first."""
    folder = workspace.root / "templates" if workspace is not None else None
    items = []
    for path in sorted(folder.glob(f"*/{USER_TEMPLATE_RECORD}")) if folder and folder.is_dir() else []:
        try:
            item = _read_json(path)
        except (OSError, ValueError):
            continue  # a record broken by hand is passed over, as list does
        if isinstance(item, dict) and item.get("id") == path.parent.name and item.get("name"):
            items.append({**item, "user_defined": True})
    return sorted(items, key=lambda t: str(t.get("created", "")))


def _user_template(record: dict[str, Any], workspace: Workspace) -> dict[str, Any]:
    """A user template ready to render: its content read now (a delete during a tune cannot take it away)."""
    folder = workspace.root / "templates" / record["id"]
    try:
        text = (folder / record.get("content_file", USER_TEMPLATE_CONTENT)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError("record_invalid", f"User template {record['id']}: its content file cannot be read ({exc}).",
                          "Delete the template and import it again.") from None
    return {**record, "own_model_params": record.get("model_params") or {},
            "model_params": user_template_schema(record.get("model_params") or {}, record.get("purpose", "Other")),
            "content_text": text}


def find_template(ident: str, workspace: Optional[Workspace] = None) -> dict[str, Any]:
    """A built-in template, or one of the workspace's user templates, by id or name."""
    for item in templates():
        if ident == item["id"] or _name_key(ident) == _name_key(item["name"]):
            return item
    own = user_templates(workspace)
    for item in own:
        if ident == item["id"] or _name_key(ident) == _name_key(item["name"]):
            return _user_template(item, workspace)  # type: ignore[arg-type]
    raise SpecError("unknown_template", f"tune_template_id '{ident}' is not a known template.",
                    "Use one of: " + ", ".join(f"{t['id']} ({t['name']})" for t in templates() + own))


def template_text(template: dict[str, Any]) -> str:
    if "content_text" in template:  # a user template (find_template read it)
        return template["content_text"]
    return (TEMPLATES_DIR / template["content_file"]).read_text(encoding="utf-8")


def compatible(template: dict[str, Any], backbone: dict[str, Any]) -> bool:
    """The Studio's rule: template and backbone share a model category (a user template takes any backbone)."""
    if template.get("user_defined"):
        return True
    return template["extra_info"]["model_category"] == backbone["model_params"]["model_category"]


def compatible_backbones(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in backbones() if compatible(template, b)]


def templates_for(purpose: str) -> list[dict[str, Any]]:
    return [t for t in templates() if t["purpose"] == purpose]


def build_catalog(workspace: Optional[Workspace] = None, access: Optional[dict[str, Any]] = None,
                  discovered: Optional[dict[str, list[dict[str, Any]]]] = None) -> dict[str, Any]:
    catalog = {
        "connectors": connectors(workspace, discovered),
        "templates": [{k: v for k, v in t.items() if k != "content_file"} for t in templates()]
        + [{k: v for k, v in t.items() if k != "content_file"} for t in user_templates(workspace)],
        "backbones": backbones(),
    }
    for connector in catalog["connectors"]:
        if access and connector["id"] in access:
            connector["access"] = access[connector["id"]]
    return catalog
