"""Inference dock: a tuned model on a raster layer (optionally cropped to an area), or on an area drawn on the
map and dates (the engine fetches the imagery); a run's layers load as one group and export as a map; the
workspace's runs are listed below (inference_history: Re-open, Details, Delete)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QDate
from qgis.PyQt.QtWidgets import QFileDialog, QLineEdit, QSizePolicy, QToolButton

from .. import compat, contract, credentials, inference_request, layers, map_export, qgis_inputs, run_layers, settings
from .. import tasks, workspace_index
from ..inference_request import AreaRequest
from .base import UiDock
from .extent_tool import AreaDrawer
from .inference_history import InferenceHistory
from .messages import show_success, show_warning

PROBLEM_STYLE = "color: #b2182b;"


def availability_line(entry: contract.AvailabilityDate) -> str:
    """One requested date as a person reads it: the day with data and its scenes' cloud cover, or the nearest
    dates that have data."""
    asked = entry.get("request") or entry.get("start") or "?"
    if not entry.get("date"):
        nearest = ", ".join(entry.get("nearest_dates") or []) or "none within the search window"
        return f"{asked}: no data; nearest dates with data: {nearest}"
    scenes = [scene for modality in (entry.get("modalities") or {}).values() for scene in modality.get("scenes", [])]
    clouds = [float(s["cloud_cover"]) for s in scenes if s.get("cloud_cover") is not None]
    cloud = f", cloud {min(clouds):.0f} %" if clouds else ""
    day = entry["date"] if entry["date"] == asked else f"{entry['date']} (of {asked})"
    return f"{day}: {len(scenes)} scene{'' if len(scenes) == 1 else 's'}{cloud}"


class InferenceDock(UiDock, InferenceHistory):
    UI_FILE = "inference_dock.ui"
    HELP_SECTION = "inference"  # README: The docks > inference
    TITLE = "Inference"
    OBJECT_NAME = "GeoStudioInferenceDock"
    RUN_BUTTON = ("runButton", "checkAvailabilityButton")  # both off while a job runs
    CANCEL_BUTTON = "cancelButton"
    TOOLTIPS = {
        "tuneCombo": "A tuned model from the Fine-tuning tab",
        "layerCombo": "The input raster (a GeoTIFF file) with the bands the model was trained on",
        "runButton": "Predict in the background; the result is added as a styled layer and the map zooms to it",
        "cancelButton": "Stop the running inference; nothing is loaded",
    }
    RASTER_PAGE, AREA_PAGE = 0, 1  # modeCombo's entries and modeStack's pages, in the same order
    AVAILABILITY_TIP = ("Ask the model's collection which of the dates have imagery over the area under the cloud "
                        "limit (nothing is downloaded); a date without any gets the nearest dates that have some")
    DEFAULT_DAYS = 7  # the area mode's date range: the last week

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
        self.visibilityChanged.connect(self._on_visible)
        self._on_layer(self.ui.layerCombo.currentLayer())
        self.export_content: Optional[map_export.MapContent] = None  # the last run's map, for Export map…
        self.run: Optional[run_layers.RunLayers] = None  # the last area run's layers
        self._source_id = ""  # the running raster inference's input layer
        self.ui.exportButton.clicked.connect(lambda: self.export_map())
        self._set_up_area_mode()
        self._set_up_history()

    def _on_visible(self, visible: bool) -> None:
        if visible:
            self.refresh_tunes()
            self.refresh_runs()

    def _set_running(self, running: bool) -> None:
        """A run or a delete that ends (done, failed or cancelled) brings the history up to date."""
        super()._set_running(running)
        if not running:
            self.refresh_runs()
        self._update_history_buttons()

    # ------------------------------------------------------------------ area and dates
    def _set_up_area_mode(self) -> None:
        canvas = self.iface.mapCanvas()
        self.drawer = AreaDrawer(canvas)  # its outline lives on the canvas: released in release_canvas()
        self.drawer.drawn.connect(self._on_drawn)
        area = self.ui.areaExtentWidget
        area.setOutputCrs(qgis_inputs.WGS84)  # the Studio's bbox CRS: one transform from wherever it comes
        area.setMapCanvas(canvas)
        area.setNullValueAllowed(True, "No area yet")
        area.clear()
        area.extentChanged.connect(self._on_area_changed)
        self.ui.modeCombo.currentIndexChanged.connect(self._on_mode)
        self.ui.drawButton.clicked.connect(lambda: self.drawer.start())
        self.ui.selectedButton.clicked.connect(lambda: self.use_selected_features())
        self.ui.clearAreaButton.clicked.connect(lambda: self.clear_area())
        self.ui.singleDateCheck.toggled.connect(self.ui.endDateEdit.setDisabled)
        self.ui.singleDateCheck.toggled.connect(self.ui.everyDateCheck.setDisabled)  # one day: nothing to expand
        today = QDate.currentDate()
        self.ui.endDateEdit.setDate(today)
        self.ui.startDateEdit.setDate(today.addDays(-self.DEFAULT_DAYS))
        self.ui.maxccSpin.setValue(inference_request.DEFAULT_MAXCC)
        self.ui.masksGroup.setCollapsed(True)
        self.ui.masksGroup.collapsedStateChanged.connect(lambda _collapsed: self._fit_page())
        for button in self.ui.masksGroup.findChildren(QToolButton, "collapseButton"):  # its own arrow
            button.setToolTip("Show or hide the post-processing masks")
        self.ui.checkAvailabilityButton.clicked.connect(lambda: self.check_availability())
        self.ui.checkAvailabilityButton.setToolTip(self.AVAILABILITY_TIP)
        self.closed.connect(self.drawer.unload)  # the outline leaves the map with the dock...
        self.opened.connect(self._show_area)  # ...and comes back with it
        self._on_mode()

    def area_mode(self) -> bool:
        return self.ui.modeCombo.currentIndex() == self.AREA_PAGE

    def _on_mode(self, _index: int = 0) -> None:
        """Show the mode's page; the hidden page takes no room (a stack is as tall as its tallest page)."""
        current = self.AREA_PAGE if self.area_mode() else self.RASTER_PAGE
        stack = self.ui.modeStack
        for index in range(stack.count()):
            policy = QSizePolicy.Policy.Preferred if index == current else QSizePolicy.Policy.Ignored
            stack.widget(index).setSizePolicy(policy, policy)
        stack.setCurrentIndex(current)
        self._fit_page()
        canvas = self.iface.mapCanvas()
        if self.area_mode():  # the widget's "current extent" is what the map shows now
            self.ui.areaExtentWidget.setCurrentExtent(canvas.extent(), canvas.mapSettings().destinationCrs())
        self._say("")

    def _fit_page(self) -> None:
        """The stack follows its page's height (a page grows when the masks box opens)."""
        page = self.ui.modeStack.currentWidget()
        page.layout().activate()
        self.ui.modeStack.setMaximumHeight(page.sizeHint().height())
        self.ui.modeStack.updateGeometry()

    def _on_drawn(self, rectangle: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """A rectangle drawn on the canvas (canvas CRS) becomes the area; the widget shows it in EPSG:4326."""
        self._set_area(rectangle, crs)

    def _set_area(self, rectangle: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Set the area from the dock (drawn, selection); the widget's text shows xmin first, not its CRS tail."""
        self.ui.areaExtentWidget.setOutputExtentFromUser(rectangle, crs)
        for line in self.ui.areaExtentWidget.findChildren(QLineEdit, "mCondensedLineEdit"):
            line.setCursorPosition(0)

    def _on_area_changed(self, extent: QgsRectangle) -> None:
        """Whatever set the area (drawing, typing, a layer or the canvas), the map outlines it."""
        widget = self.ui.areaExtentWidget
        if widget.isValid() and not extent.isNull():
            self.drawer.show(extent, widget.outputCrs())
        else:
            self.drawer.clear()

    def use_selected_features(self) -> Optional[QgsRectangle]:
        """The combined extent of the selected features of the active vector layer (else of the first layer
        with a selection), their shapes transformed to EPSG:4326 (qgis_inputs.selection_extent_4326)."""
        layer = self._layer_with_selection()
        box = qgis_inputs.selection_extent_4326(layer) if layer is not None else None
        if layer is None or box is None:
            self._say("Area: select features of a polygon layer first (the active layer, or any layer with a "
                      "selection).", problem=True)
            return None
        self._set_area(box, qgis_inputs.WGS84)
        self._say(f"Area: the {layer.selectedFeatureCount()} selected feature(s) of {layer.name()}.")
        return box

    def _layer_with_selection(self) -> Optional[QgsVectorLayer]:
        active = self.iface.activeLayer() if hasattr(self.iface, "activeLayer") else None
        candidates = [active] + list(QgsProject.instance().mapLayers().values())
        return next((layer for layer in candidates if isinstance(layer, QgsVectorLayer)
                     and layer.selectedFeatureCount() > 0), None)

    def clear_area(self) -> None:
        self.ui.areaExtentWidget.clear()
        self.drawer.clear()

    def _show_area(self) -> None:
        if self.area_mode():
            self._on_area_changed(self.ui.areaExtentWidget.outputExtent())

    def release_canvas(self) -> None:
        """The plugin unloads: stop drawing, give the map its tool back, take the outline off the map."""
        self.drawer.dispose()

    def area_request(self) -> Optional[AreaRequest]:
        """The area-and-dates request from the widgets, read here on the main thread; None, with the reason
        (naming the field) in the dock's label, when something must be fixed first."""
        widget = self.ui.areaExtentWidget
        extent = widget.outputExtent() if widget.isValid() else QgsRectangle()
        bbox = qgis_inputs.widget_bbox(widget)  # the one extent -> EPSG:4326 rule
        if bbox is None and not extent.isNull():
            bbox = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]  # empty: said below
        start = self.ui.startDateEdit.date().toPyDate()
        end = None if self.ui.singleDateCheck.isChecked() else self.ui.endDateEdit.date().toPyDate()
        problem = "" if self.ui.tuneCombo.currentData() else (
            "Model: pick a tuned model first (fine-tune one in the Fine-tuning tab).")
        problem = problem or inference_request.bbox_problem(bbox)
        problem = problem or inference_request.date_problem(start, end, QDate.currentDate().toPyDate())
        if problem:
            self._say(problem, problem=True)
            return None
        masks = {"cloud_masking": self.ui.cloudMaskCheck.isChecked(),
                 "snow_ice_masking": self.ui.snowMaskCheck.isChecked(),
                 "permanent_water_masking": self.ui.waterMaskCheck.isChecked()}
        record = self.tunes.get(self.ui.tuneCombo.currentData() or "", {})
        request = AreaRequest(model=str(self.ui.tuneCombo.currentData()), bbox_4326=tuple(bbox),
                              dates=(inference_request.date_entry(start, end),), maxcc=self.ui.maxccSpin.value(),
                              masks=masks, device=contract.normalise_device(settings.device()),
                              every_date=end is not None and self.ui.everyDateCheck.isChecked(),
                              location=inference_request.place_text(bbox),
                              description=f"{record.get('name') or 'area'} {inference_request.date_entry(start, end)}")
        problem = request.problem()
        if problem:
            self._say(problem, problem=True)
            return None
        return request

    def availability_request(self) -> Optional[AreaRequest]:
        """What "Check availability" asks the engine about: the same request as Run (area, dates, cloud limit)."""
        return self.area_request()

    def _model_secrets(self, model: str) -> dict[str, str]:
        """The credentials of the connectors the model's input comes from (the QGIS auth database; never saved)."""
        return credentials.for_model(self.tunes.get(model, {}))

    def check_availability(self) -> Optional[tasks.EngineTask]:
        request = self.availability_request()
        if request is None or self.task is not None:
            return None
        self._say("Checking which dates have data…")
        return self.start_engine_task(f"GeoStudio: availability for {request.description}",
                                      contract.CHECK_AVAILABILITY, request.availability_payload(credentials.endpoints()),
                                      self._availability_done, on_event=self._show_stage,
                                      secrets=self._model_secrets(request.model), on_failure=self._failed)

    def _availability_done(self, result: dict[str, Any]) -> None:
        summary: contract.AvailabilitySummary = result["summary"]
        lines = [availability_line(entry) for entry in summary.get("dates", [])]
        ready = bool(summary.get("available"))
        self._say(("Data for every date: Run predicts on it." if ready else "Not every date has data:")
                  + "\n" + "\n".join(lines), problem=not ready)

    def start_area_inference(self) -> Optional[tasks.EngineTask]:
        request = self.area_request()
        if request is None:
            return None
        self._say("Starting…")
        self.warnings = []
        return self.start_engine_task(f"GeoStudio: inference on {request.description}", contract.INFER,
                                      request.to_payload(credentials.endpoints()), self._area_done,
                                      on_event=self._show_stage, secrets=self._model_secrets(request.model),
                                      on_failure=self._failed)

    def _area_done(self, result: dict[str, Any]) -> None:
        try:
            self.load_run(run_layers.run_record(result))
        except (OSError, ValueError, KeyError, RuntimeError) as error:  # a record or file QGIS cannot read
            self._say(f"Done, but the run could not be loaded: {error}", problem=True)

    def load_run(self, run: dict[str, Any]) -> run_layers.RunLayers:
        """An area run's record (inference.json): its layers as one group, the map zoomed to them, Export on."""
        self.run = run_layers.load_run(run)
        self.loaded_layers = self.run.layers()
        self.export_content = map_export.map_content(self.run)
        self.ui.exportButton.setEnabled(True)
        dates = run_layers.run_dates(run)
        timed = " Step through them with the Temporal Controller." if self.run.time_range is not None else ""
        self._say(f"Done: {self.run.title}: {len(dates)} date(s) loaded.{timed}")
        layers.zoom_to(self.iface.mapCanvas(), self.loaded_layers)
        return self.run

    def export_map(self, png_path: str = "") -> Optional[tuple[Path, Optional[Path]]]:
        """The last run's map as a PNG and a PDF beside it (same name), after asking where."""
        if self.export_content is None:
            self._say("Export map: run an inference first.", problem=True)
            return None
        canvas = self.iface.mapCanvas()
        if self.run is not None and canvas.mapSettings().isTemporal():  # the date the person is looking at
            shown = map_export.date_shown(self.run, canvas.temporalRange())
            if shown:
                self.export_content = map_export.map_content(self.run, shown)
        if not png_path:
            png_path, _ = QFileDialog.getSaveFileName(self, "Export map", "", "PNG image (*.png)")
        if not png_path:
            return None
        png = Path(png_path).with_suffix(".png")
        try:
            written = map_export.export_map(self.export_content, png, png.with_suffix(".pdf"))
        except (OSError, ValueError) as error:
            self._say(f"Export map: {error}", problem=True)
            return None
        self._say(f"Map exported: {written[0]} and {written[1].name}.")
        return written

    # ------------------------------------------------------------------ raster layer

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
        if self.area_mode():
            return self.start_area_inference()
        if not self.ui.tuneCombo.currentData():
            self._say("Pick a tuned model first (fine-tune one in the Fine-tuning tab).", problem=True)
            return None
        payload = self.build_payload()
        if not payload["spatial_domain"]["urls"] or not Path(payload["spatial_domain"]["urls"][0]).is_file():
            self._say("Pick an input raster stored in a local file (GeoTIFF).", problem=True)
            return None
        self.loaded_layers = []
        self.warnings: list[str] = []
        # the input is named by its id, not held: the person may remove it while the engine works on its file
        self._source_id = self.ui.layerCombo.currentLayer().id()
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
        self.run = None  # the last run is this raster run, not an earlier area run
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
        source = QgsProject.instance().mapLayer(self._source_id)  # None when the input was removed meanwhile
        self.export_content = map_export.MapContent(
            run_name, self.loaded_layers + ([source] if isinstance(source, QgsMapLayer) else []),
            self.loaded_layers)
        self.ui.exportButton.setEnabled(True)
        show_success("GeoStudio", f"Prediction loaded: {text}")
