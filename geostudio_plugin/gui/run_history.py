"""The Inference dock's run history: how a kept run reads in the list, which kind of run it is, and which of the
project's layers come from its folder (what Delete takes off the map first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from qgis.core import QgsLayerTreeGroup, QgsMapLayer, QgsProject
from qgis.PyQt import sip

from .. import run_layers

STATUS_TEXT = {"COMPLETED": "Completed"}
TIMINGS = (("load_model_s", "load"), ("predict_s", "predict"))  # write_cog_s: in Details


def seconds_text(seconds: Any) -> str:
    """8.4 s under a minute, else 3 min 05 s."""
    value = float(seconds or 0)
    if value < 60:
        return f"{value:.1f} s"
    total = int(round(value))
    return f"{total // 60} min {total % 60:02d} s"


def is_area_run(record: Mapping[str, Any]) -> bool:
    """An area-and-dates run (per-date outputs, fetched imagery) rather than a run on a raster layer."""
    return bool(record.get("dates")) or any(o.get("date") for o in record.get("outputs") or [])


def input_text(record: Mapping[str, Any]) -> str:
    """A raster-layer run's input: the file's name (several: the first and how many)."""
    names = [Path(str(o.get("input"))).name for o in record.get("outputs") or [] if o.get("input")]
    if not names:
        return str(record.get("description") or "")
    return names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"


def history_text(record: Mapping[str, Any]) -> str:
    """Two lines: model, place or input, status; then dates or input, outputs, timings and the total."""
    area = is_area_run(record)
    where = run_layers.run_place(record) if area else (record.get("description") or input_text(record))
    status = STATUS_TEXT.get(str(record.get("status")), str(record.get("status") or "Completed"))
    first = " — ".join(str(p) for p in (run_layers.run_model(record), where, status) if p)
    count = len(record.get("dates") or record.get("outputs") or [])
    dates = sorted({str(d.get("date")) for d in (record.get("dates") or record.get("outputs") or [])
                    if d.get("date")})
    facts = [f"{(run_layers.dates_text(dates) if area else input_text(record)) or '?'}, "
             f"{count} output{'' if count == 1 else 's'}"]
    timings = record.get("timings") or {}
    facts += [f"{label} {seconds_text(timings[key])}" for key, label in TIMINGS if timings.get(key) is not None]
    if record.get("seconds") is not None:
        facts.append(f"total {seconds_text(record['seconds'])}")
    return f"{first}\n    " + " · ".join(facts)


def tooltip_text(record: Mapping[str, Any]) -> str:
    return f"{record.get('inference_id', '?')}, {str(record.get('created') or '')[:19].replace('T', ' ')}".strip(", ")


def layers_from(folder: Path, project: Optional[QgsProject] = None) -> list[QgsMapLayer]:
    """The project's layers whose file lies in ``folder`` (a run's layers, however they were renamed)."""
    project = project or QgsProject.instance()
    root = folder.resolve()
    found = []
    for layer in project.mapLayers().values():
        source = Path(layer.source().split("|")[0])
        try:
            if source.resolve().is_relative_to(root):
                found.append(layer)
        except (OSError, ValueError):
            continue
    return found


def remove_layers(layers: list[QgsMapLayer], project: Optional[QgsProject] = None) -> int:
    """Take the layers out of the project and drop the groups they leave empty; how many went."""
    project = project or QgsProject.instance()
    tree = project.layerTreeRoot()
    parents = [node.parent() for node in (tree.findLayer(layer.id()) for layer in layers) if node is not None]
    project.removeMapLayers([layer.id() for layer in layers])
    for group in parents:  # a run's group and its per-date sub-groups: several layers share one parent
        while (isinstance(group, QgsLayerTreeGroup) and not sip.isdeleted(group) and group.parent() is not None
               and not group.children()):
            parent = group.parent()
            parent.removeChildNode(group)
            group = parent
    return len(layers)
