"""Inference dock: a tuned model, an input raster and an optional extent drawn on the canvas."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QFileDialog

from .. import compat, contract, layers, qgis_inputs, settings, tasks, workspace_index
from .base import UiDock
from .messages import show_success, show_warning

PROBLEM_STYLE = "color: #b2182b;"


class InferenceDock(UiDock):
    UI_FILE = "inference_dock.ui"
    HELP_SECTION = "inference"  # README: The docks > inference
    TITLE = "Inference"
    OBJECT_NAME = "GeoStudioInferenceDock"
    RUN_BUTTON = "runButton"
    CANCEL_BUTTON = "cancelButton"
    TOOLTIPS = {
        "tuneCombo": "A tuned model from the Fine-tuning tab",
        "layerCombo": "The input raster (a GeoTIFF file) with the bands the model was trained on",
        "runButton": "Predict in the background; the result is added as a styled layer and the map zooms to it",
        "cancelButton": "Stop the running inference; nothing is loaded",
    }

    def __init__(self, iface, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.loaded_layers: list[QgsRasterLayer] = []
        self.tunes: dict[str, dict[str, Any]] = {}  # tune_id -> record, for the model's bands and classes
        self.ui.layerCombo.setFilters(compat.LAYER_FILTER_RASTER)
        self.ui.extentWidget.setOutputCrs(qgis_inputs.WGS84)  # then the picked layer's CRS
        self.ui.extentWidget.setMapCanvas(iface.mapCanvas())
        self.ui.extentWidget.setNullValueAllowed(True, "Whole raster")
        self.ui.extentWidget.clear()
        self.ui.layerCombo.layerChanged.connect(self._on_layer)
        self.ui.tuneCombo.currentIndexChanged.connect(lambda _index: self.show_model_info())
        self.ui.runButton.clicked.connect(self.start_inference)
        self.ui.browseButton.clicked.connect(lambda: self.browse_raster())
        self.visibilityChanged.connect(lambda visible: visible and self.refresh_tunes())
        self._on_layer(self.ui.layerCombo.currentLayer())

    def refresh_tunes(self) -> None:
        current = self.ui.tuneCombo.currentData()
        self.ui.tuneCombo.clear()
        self.tunes = {}
        for record in workspace_index.models():
            self.tunes[record["tune_id"]] = dict(record)
            self.ui.tuneCombo.addItem(f"{record['name']} ({record['tune_id']})", record["tune_id"])
        if current:
            self.ui.tuneCombo.setCurrentIndex(max(self.ui.tuneCombo.findData(current), 0))
        self.show_model_info()

    def show_model_info(self) -> str:
        """What the chosen model reads and predicts, and whether the chosen raster has that many bands
        (QGIS's 1-based band numbers); the engine checks the band names before it loads the model."""
        record = self.tunes.get(self.ui.tuneCombo.currentData() or "")
        layer = self.ui.layerCombo.currentLayer()
        if not record:
            self.ui.modelInfoLabel.setText("")
            return ""
        spec = record.get("data_spec") or {}
        names = [str(n) for n in spec.get("band_names") or []]
        positions = list(spec.get("bands") or range(len(names)))
        classes = ", ".join(str(c.get("name")) for c in record.get("classes", []))
        reads = ", ".join(f"{p + 1} {n}" for p, n in zip(positions, names)) or f"{len(positions)} band(s)"
        text = f"Reads bands {reads}" + (f" ({spec['modality_tag']})" if spec.get("modality_tag") else "")
        text += f"; predicts {classes}." if classes else "."
        problem = False
        if layer is not None and positions:
            count = layer.bandCount()
            if count < max(positions) + 1:
                text += f" {layer.name()} has only {count} band(s)."
                problem = True
            elif count != len(positions):
                text += f" {layer.name()} has {count} bands: check they hold {', '.join(names) or 'them'}."
        self.ui.modelInfoLabel.setText(text)
        self.ui.modelInfoLabel.setStyleSheet(PROBLEM_STYLE if problem else "")
        return text

    def browse_raster(self) -> Optional[QgsRasterLayer]:
        """A raster from disk: added to the project and chosen as the input."""
        path, _ = QFileDialog.getOpenFileName(self, "Input raster", "", "GeoTIFF (*.tif *.tiff);;All files (*)")
        if not path:
            return None
        layer = QgsRasterLayer(path, Path(path).stem)
        if not layer.isValid():
            self._say(f"QGIS cannot open {Path(path).name} as a raster.", problem=True)
            return None
        QgsProject.instance().addMapLayer(layer)
        self.ui.layerCombo.setLayer(layer)
        return layer

    def _on_layer(self, layer: Optional[QgsRasterLayer]) -> None:
        """An extent is kept in the layer's CRS, as Processing's extent parameter keeps its own; both become an
        EPSG:4326 bbox through one rule (qgis_inputs.bbox_4326)."""
        if layer is not None:
            canvas = self.iface.mapCanvas()
            self.ui.extentWidget.setOriginalExtent(layer.extent(), layer.crs())
            self.ui.extentWidget.setCurrentExtent(canvas.extent(), canvas.mapSettings().destinationCrs())
            self.ui.extentWidget.setOutputCrs(layer.crs())
        self.show_model_info()

    def build_payload(self) -> dict[str, Any]:
        """Everything is read from the widgets here, on the main thread, before the task starts."""
        layer = self.ui.layerCombo.currentLayer()
        return contract.infer_spec(qgis_inputs.layer_path(layer), qgis_inputs.widget_bbox(self.ui.extentWidget),
                                   self.ui.tuneCombo.currentData() or "", settings.device(),
                                   description=layer.name() if layer else "")

    def _say(self, text: str, problem: bool = False) -> None:
        self.ui.resultLabel.setText(text)
        self.ui.resultLabel.setStyleSheet(PROBLEM_STYLE if problem else "")

    def start_inference(self) -> Optional[tasks.EngineTask]:
        if self.task is not None:
            return None
        if not self.ui.tuneCombo.currentData():
            self._say("Pick a tuned model first (fine-tune one in the Fine-tuning tab).", problem=True)
            return None
        payload = self.build_payload()
        if not payload["spatial_domain"]["urls"] or not Path(payload["spatial_domain"]["urls"][0]).is_file():
            self._say("Pick an input raster stored in a local file (GeoTIFF).", problem=True)
            return None
        self.loaded_layers = []
        self.warnings: list[str] = []
        self._say("Starting…")
        record = self.tunes.get(str(payload.get("fine_tuning_id") or ""), {})
        self._run_name = (f"{record.get('name') or self.ui.tuneCombo.currentText()} on {payload['description']}, "
                          f"{time.strftime('%H:%M')}")
        return self.start_engine_task(f"GeoStudio: inference on {payload['description']}", contract.INFER, payload,
                                      self._done, on_event=self._show_stage, on_failure=self._failed)

    def _show_stage(self, event: dict[str, Any]) -> None:
        if contract.is_progress(event) and self.task is not None:
            self._say(str(event.get("message", "")))
        elif contract.is_log(event) and event.get("level") == "warning":  # e.g. unnamed bands, another count
            self.warnings.append(str(event.get("message", "")))
            show_warning("GeoStudio", self.warnings[-1])

    def _failed(self, failure: contract.EngineFailure) -> None:
        """The run's last progress text goes: the label says how it ended."""
        if failure.cancelled:
            self._say("Cancelled: nothing was loaded.")
        else:
            self._say(f"Failed: {failure.message} {failure.hint}".strip(), problem=True)

    def _done(self, result: dict[str, Any]) -> None:
        summary: contract.InferSummary = result["summary"]
        run_name = getattr(self, "_run_name", "") or summary["inference_id"]
        self.loaded_layers = layers.load_inference_layers(summary, f"GeoStudio: {run_name}")
        for layer in self.loaded_layers:  # two runs never look alike: model, input and time in every name
            layer.setName(f"{layer.name()} ({run_name})")
        shares = summary["outputs"][0].get("class_fraction", {}) if summary.get("outputs") else {}
        names = {str(c["id"]): c["name"] for c in summary.get("classes", [])}
        text = ", ".join(f"{names.get(k, k)} {v:.0%}" for k, v in shares.items())
        warned = getattr(self, "warnings", [])
        self._say(f"Done: {summary['inference_id']}: {text} ({summary['seconds']:.1f} s on {summary['device']})"
                  + (f"\nWarning: {' '.join(warned)}" if warned else ""), problem=bool(warned))
        layers.zoom_to(self.iface.mapCanvas(), self.loaded_layers)
        show_success("GeoStudio", f"Prediction loaded: {text}")
