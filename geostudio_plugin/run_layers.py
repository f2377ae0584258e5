"""One inference run over an area and dates, loaded as one layer group (main thread only).

Reads an ``inference.json``-shaped record: ``classes`` (id, name, color, opacity), ``outputs`` with one entry
per date (``date``, ``rgb`` ``*_rgb.tif`` uint8 3-band, ``prediction`` ``*_pred.tif`` uint8 class ids with
nodata 255, ``masked`` ``*_masked.tif`` int16 with the masks' values 999/998/997 and nodata -9999, and
``confidence`` ``*_confidence.tif`` when the predictor wrote one). A run of several dates is time-enabled: each
date's layers carry that day as a fixed temporal range, so QGIS's Temporal Controller steps through the run.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from qgis.core import (
    QgsDateTimeRange,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QDate, QDateTime, QTime

from . import compat, layers

#: The masks' values in ``*_masked.tif`` (the Studio's post-processing) with their legend entries.
MASK_ENTRIES: list[dict[str, Any]] = [
    {"quantity": 999, "color": "#f0f0f0", "label": "Cloud (masked)", "opacity": 1},
    {"quantity": 998, "color": "#66e0ff", "label": "Snow or ice (masked)", "opacity": 1},
    {"quantity": 997, "color": "#08306b", "label": "Permanent water (masked)", "opacity": 1},
]


@dataclass
class DateLayers:
    """The layers of one date, any of which may be missing (None)."""

    date: str
    rgb: Optional[QgsRasterLayer] = None
    prediction: Optional[QgsRasterLayer] = None
    masked: Optional[QgsRasterLayer] = None
    confidence: Optional[QgsRasterLayer] = None

    def layers(self) -> list[QgsRasterLayer]:
        """Top to bottom, as in the layer tree."""
        return [lyr for lyr in (self.confidence, self.masked, self.prediction, self.rgb) if lyr is not None]

    def shown_prediction(self) -> Optional[QgsRasterLayer]:
        """The prediction a map shows: the masked one when the run masked anything."""
        return self.masked or self.prediction


@dataclass
class RunLayers:
    title: str  # model, place and dates (run_title)
    group: QgsLayerTreeGroup
    dates: list[DateLayers] = field(default_factory=list)
    time_range: Optional[QgsDateTimeRange] = None  # the whole run; None for a single date
    model: str = ""
    place: str = ""

    def layers(self) -> list[QgsRasterLayer]:
        return [lyr for day in self.dates for lyr in day.layers()]


FILE_KEYS = ("rgb", "prediction", "masked", "confidence")


def run_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """An ``infer`` result's run record: its ``inference.json`` (model name, place, dates and every output) when
    the result names one, else the result's summary. File paths in the record may be relative to its folder."""
    outputs = result.get("outputs") or {}
    path = Path(str(outputs.get("inference_json") or "")) if isinstance(outputs, Mapping) else Path()
    if path.name and path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        folder = path.parent
    else:
        record = dict(result.get("summary") or {})
        folder = Path(str(outputs.get("inference_dir") or ".")) if isinstance(outputs, Mapping) else Path(".")
    if record.get("dates"):  # the engine's area run: one entry per sub-area x date (contract.InferDate)
        record["outputs"] = [per_date(entry, record.get("outputs") or []) for entry in record["dates"]]
    for output in record.get("outputs", []):
        for key in FILE_KEYS:
            if output.get(key) and not Path(str(output[key])).is_absolute():
                output[key] = str(folder / str(output[key]))
    return record


def per_date(entry: Mapping[str, Any], outputs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """An area run's date entry with the confidence file its prediction got (the prediction's own output)."""
    same = next((o for o in outputs if Path(str(o.get("prediction", ""))).name ==
                 Path(str(entry.get("prediction", ""))).name), {})
    return {**dict(entry), **({"confidence": same["confidence"]} if same.get("confidence") else {})}


def run_place(run: Mapping[str, Any]) -> str:
    return str(run.get("location") or run.get("description") or "").strip()


def run_dates(run: Mapping[str, Any]) -> list[str]:
    return [str(o.get("date")) for o in run.get("outputs", []) if o.get("date")]


def dates_text(dates: list[str]) -> str:
    if not dates:
        return ""
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]} ({len(dates)} dates)"


def run_model(run: Mapping[str, Any]) -> str:
    return str(run.get("model_display_name") or run.get("tune_id") or "model")


def run_title(run: Mapping[str, Any]) -> str:
    """Model, place and dates: what tells two runs apart in the layer tree and on a printed map."""
    parts = [run_model(run), run_place(run), dates_text(run_dates(run))]
    return " — ".join(p for p in parts if p)


def day_range(date: str) -> QgsDateTimeRange:
    """One calendar day, [00:00, next day 00:00)."""
    day = _dt.date.fromisoformat(date[:10])
    start = QDateTime(QDate(day.year, day.month, day.day), QTime(0, 0))
    return QgsDateTimeRange(start, start.addDays(1), True, False)


def class_entries(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's classes as Studio segmentation entries (quantity, color, label, opacity); else the
    prediction layer's own style from ``layers``."""
    classes = run.get("classes") or []
    if classes:
        return [{"quantity": int(c["id"]), "color": c.get("color") or "#808080",
                 "label": str(c.get("name", c["id"])), "opacity": c.get("opacity", 1)} for c in classes]
    for spec in run.get("layers", []):
        style = spec.get("geoserver_style") or {}
        if style.get("segmentation"):
            return list(style["segmentation"])
    return []


def confidence_path(output: Mapping[str, Any]) -> Optional[str]:
    """``confidence`` as the record names it, else ``<stem>_confidence.tif`` beside the prediction."""
    if output.get("confidence"):
        return str(output["confidence"])
    prediction = output.get("prediction")
    if not prediction:
        return None
    path = Path(str(prediction))
    stem = path.stem[:-len("_pred")] if path.stem.endswith("_pred") else path.stem
    candidate = path.with_name(f"{stem}_confidence.tif")
    return str(candidate) if candidate.is_file() else None


def _open(path: Optional[str], name: str) -> Optional[QgsRasterLayer]:
    if not path:
        return None
    layer = QgsRasterLayer(str(path), name)
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open {name}: {path}")
    return layer


def _set_time(layer: QgsMapLayer, when: QgsDateTimeRange) -> None:
    properties = layer.temporalProperties()
    properties.setMode(compat.RASTER_TEMPORAL_FIXED)
    properties.setFixedTemporalRange(when)
    properties.setIsActive(True)


def _extend_project_time(project: QgsProject, when: QgsDateTimeRange) -> None:
    """The project's time range covers the run (the Temporal Controller's "project range" button uses it)."""
    settings = project.timeSettings()
    current = settings.temporalRange()
    begin, end = when.begin(), when.end()
    if current.begin().isValid() and current.end().isValid():
        begin, end = min(begin, current.begin()), max(end, current.end())
    settings.setTemporalRange(QgsDateTimeRange(begin, end))


def load_day(output: Mapping[str, Any], entries: list[dict[str, Any]]) -> DateLayers:
    date = str(output.get("date") or "")
    suffix = f", {date}" if date else ""
    day = DateLayers(date)
    day.rgb = _open(output.get("rgb"), f"Input RGB{suffix}")
    if day.rgb is not None:
        layers.show_bands(day.rgb, [1, 2, 3] if day.rgb.bandCount() >= 3 else None)  # cumulative-cut stretch
    day.prediction = _open(output.get("prediction"), f"Prediction{suffix}")
    if day.prediction is not None and entries:
        day.prediction.setRenderer(layers.paletted_renderer(day.prediction, entries))
    day.masked = _open(output.get("masked"), f"Masked prediction{suffix}")
    if day.masked is not None:
        day.masked.setRenderer(layers.paletted_renderer(day.masked, entries + MASK_ENTRIES))
    day.confidence = _open(confidence_path(output), f"Confidence{suffix}")
    if day.confidence is not None:
        layers.grey_stretch(day.confidence)
    return day


def load_run(run: Mapping[str, Any], project: Optional[QgsProject] = None,
             group_name: Optional[str] = None) -> RunLayers:
    """Every date's layers, styled, in one group (latest date on top, one sub-group per date). Visible: the
    input and the masked prediction (the plain prediction where nothing was masked); confidence is unchecked."""
    project = project or QgsProject.instance()
    entries = class_entries(run)
    days = [load_day(o, entries) for o in run.get("outputs", [])]  # every file opens before anything is added
    title = run_title(run)
    group = layers.result_group(group_name or f"GeoStudio: {title}", project)
    result = RunLayers(title, group, days, model=run_model(run), place=run_place(run))
    timed = len([d for d in days if d.date]) > 1
    for day in sorted(days, key=lambda d: d.date, reverse=True):
        parent = group.addGroup(day.date) if day.date else group
        visible = {id(day.rgb), id(day.shown_prediction())}
        for layer in day.layers():
            project.addMapLayer(layer, False)
            parent.addLayer(layer).setItemVisibilityChecked(id(layer) in visible)
            if timed:
                _set_time(layer, day_range(day.date))
    if timed:
        ranges = [day_range(d.date) for d in days if d.date]
        result.time_range = QgsDateTimeRange(min(r.begin() for r in ranges), max(r.end() for r in ranges))
        _extend_project_time(project, result.time_range)
    return result


def visible_at(run_layers: Iterable[QgsMapLayer], when: QgsDateTimeRange) -> list[QgsMapLayer]:
    """The layers a temporal map at ``when`` draws (layers without active time are always drawn)."""
    return [lyr for lyr in run_layers
            if not lyr.temporalProperties().isActive() or lyr.temporalProperties().isVisibleInTemporalRange(when)]
