"""A printable map of a run: prediction over its input, legend, scale bar, north arrow and a title; PNG and PDF.

``map_content`` picks what to show (one date of an area run, or a raster run's prediction and input);
``build_layout`` makes the QGIS print layout (A4 landscape) and ``export_map`` writes it with
QgsLayoutExporter. Each file is written under a temporary name beside its target and renamed when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDateTimeRange,
    QgsLayerTreeLayer,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemPage,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsMapLayer,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsProject,
    QgsRectangle,
    QgsSimpleLegendNode,
)
from qgis.PyQt.QtCore import QFile, QSize
from qgis.PyQt.QtGui import QFont

from .run_layers import RunLayers, day_range

#: QGIS's own north arrow (the one the layout designer's "Add North Arrow" uses).
NORTH_ARROW_SVG = ":/images/north_arrows/layout_default_north_arrow.svg"
MARGIN = 10.0
MAP_RECT = (MARGIN, 24.0, 205.0, 176.0)  # x, y, width, height in mm; the legend sits to its right


@dataclass(frozen=True)
class MapContent:
    title: str
    layers: Sequence[QgsMapLayer]  # drawn, top first
    legend_layers: Sequence[QgsMapLayer]
    time_range: Optional[QgsDateTimeRange] = None  # the date a time-enabled run's map shows
    subtitle: str = ""


def date_shown(run: RunLayers, frame: Optional[QgsDateTimeRange]) -> Optional[str]:
    """The run's date whose layers the Temporal Controller's frame shows (None when it shows none of them)."""
    if frame is None or run.time_range is None:
        return None
    return next((d.date for d in run.dates if d.date and day_range(d.date).overlaps(frame)), None)


def map_content(run: RunLayers, date: Optional[str] = None) -> MapContent:
    """One date of an area run (the given one, else the latest): its prediction over its input RGB; the title
    names model, place and that date, the subtitle the run's dates when it has several."""
    days = sorted(run.dates, key=lambda d: d.date)
    day = next((d for d in days if d.date == date), days[-1])
    shown = [lyr for lyr in (day.shown_prediction(), day.rgb) if lyr is not None]
    legend = [day.shown_prediction()] if day.shown_prediction() is not None else []
    timed = run.time_range is not None and bool(day.date)
    title = " — ".join(p for p in (run.model, run.place, day.date) if p) or run.title
    subtitle = f"Date {days.index(day) + 1} of {len(days)} ({days[0].date} to {days[-1].date})" if timed else ""
    return MapContent(title, shown, legend, day_range(day.date) if timed else None, subtitle)


def _map_crs(layer: QgsMapLayer, project: QgsProject) -> QgsCoordinateReferenceSystem:
    """A projected CRS, so the scale bar reads in metres: the layer's, else the project's, else Web Mercator."""
    for crs in (layer.crs(), project.crs()):
        if crs.isValid() and not crs.isGeographic():
            return crs
    return QgsCoordinateReferenceSystem("EPSG:3857")


def _extent(layers: Sequence[QgsMapLayer], crs: QgsCoordinateReferenceSystem, project: QgsProject) -> QgsRectangle:
    extent = QgsRectangle()
    for layer in layers:
        box = layer.extent()
        if layer.crs() != crs:
            box = QgsCoordinateTransform(layer.crs(), crs, project).transformBoundingBox(box)
        if extent.isNull():
            extent = QgsRectangle(box)
        else:
            extent.combineExtentWith(box)
    return extent


def _fit(extent: QgsRectangle, ratio: float) -> QgsRectangle:
    """The extent grown to the map frame's width/height ratio, centred (zoomToExtent needs an extent set first,
    and setExtent alone would resize the frame)."""
    fitted = QgsRectangle(extent)
    if fitted.width() / max(fitted.height(), 1e-12) < ratio:
        grow = (fitted.height() * ratio - fitted.width()) / 2
        fitted.setXMinimum(fitted.xMinimum() - grow)
        fitted.setXMaximum(fitted.xMaximum() + grow)
    else:
        grow = (fitted.width() / ratio - fitted.height()) / 2
        fitted.setYMinimum(fitted.yMinimum() - grow)
        fitted.setYMaximum(fitted.yMaximum() + grow)
    return fitted


def _label(layout: QgsPrintLayout, text: str, size: float, bold: bool = False) -> QgsLayoutItemLabel:
    label = QgsLayoutItemLabel(layout)
    label.setText(text)
    font = QFont()
    font.setPointSizeF(size)
    font.setBold(bold)
    label.setFont(font)  # setTextFormat arrived in 3.24; setFont works from 3.22 to 3.44
    layout.addLayoutItem(label)
    label.adjustSizeToText()  # measured in the layout (before it, only the first line fits)
    return label


def _classes_only(legend: QgsLayoutItemLegend, node: QgsLayerTreeLayer) -> None:
    """The legend lists a prediction's classes, without the "Band 1 (Gray)" line QGIS puts above them."""
    model = legend.model()
    nodes = model.layerLegendNodes(node)
    keep = [n for n, legend_node in enumerate(nodes) if not isinstance(legend_node, QgsSimpleLegendNode)]
    if keep and len(keep) < len(nodes):
        QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)
        model.refreshLayerLegend(node)


def _place(item, x: float, y: float, width: Optional[float] = None, height: Optional[float] = None) -> None:  # noqa: ANN001
    item.attemptMove(QgsLayoutPoint(x, y))
    if width is not None and height is not None:
        item.attemptResize(QgsLayoutSize(width, height))


def _north_arrow(layout: QgsPrintLayout, x: float, y: float) -> None:
    if QFile.exists(NORTH_ARROW_SVG):
        picture = QgsLayoutItemPicture(layout)
        picture.setPicturePath(NORTH_ARROW_SVG)
        layout.addLayoutItem(picture)
        _place(picture, x, y, 12.0, 18.0)
    else:  # a QGIS built without its resources: a plain label says it
        label = _label(layout, "N ↑", 14, bold=True)
        _place(label, x, y)


def build_layout(content: MapContent, project: Optional[QgsProject] = None) -> QgsPrintLayout:
    project = project or QgsProject.instance()
    if not content.layers:
        raise ValueError("Nothing to put on the map: the run has no layers loaded.")
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(content.title[:100])
    layout.pageCollection().page(0).setPageSize("A4", QgsLayoutItemPage.Orientation.Landscape)

    title = _label(layout, content.title, 16, bold=True)
    _place(title, MARGIN, 5.0)
    if content.subtitle:
        _place(_label(layout, content.subtitle, 10), MARGIN, 15.0)

    x, y, width, height = MAP_RECT
    crs = _map_crs(content.layers[0], project)
    item = QgsLayoutItemMap(layout)
    item.setFrameEnabled(True)
    layout.addLayoutItem(item)
    _place(item, x, y, width, height)
    item.setCrs(crs)
    item.setLayers(list(content.layers))
    item.setKeepLayerSet(True)
    if content.time_range is not None:
        item.setIsTemporal(True)
        item.setTemporalRange(content.time_range)
    item.setExtent(_fit(_extent(content.layers, crs, project), width / height))

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(item)
    legend.setAutoUpdateModel(False)
    root = legend.model().rootGroup()
    root.removeAllChildren()
    for layer in content.legend_layers:
        _classes_only(legend, root.addLayer(layer))
    layout.addLayoutItem(legend)
    legend.adjustBoxSize()
    _place(legend, x + width + 6.0, y)

    scale = QgsLayoutItemScaleBar(layout)
    scale.setStyle("Single Box")
    scale.setLinkedMap(item)
    scale.applyDefaultSize()
    scale.setBackgroundEnabled(True)  # readable over imagery
    layout.addLayoutItem(scale)
    _place(scale, x + 4.0, y + height - 16.0)

    _north_arrow(layout, x + width - 16.0, y + 4.0)
    return layout


def _export(path: Path, write) -> Path:  # noqa: ANN001 - a callable taking the temporary path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.part{path.suffix}")
    result = write(str(temporary))
    if result != QgsLayoutExporter.ExportResult.Success or not temporary.is_file():
        temporary.unlink(missing_ok=True)
        raise OSError(f"QGIS could not write {path} (layout export result {result}): check the folder "
                      "can be written and has space.")
    os.replace(temporary, path)
    return path


def export_map(content: MapContent, png_path: Path, pdf_path: Optional[Path] = None, dpi: int = 150,
               project: Optional[QgsProject] = None) -> tuple[Path, Optional[Path]]:
    """The map as a PNG (and a PDF when ``pdf_path`` is given); returns the paths written."""
    layout = build_layout(content, project)
    exporter = QgsLayoutExporter(layout)

    def write_png(path: str):  # noqa: ANN202 - a layout export result, as exportToPdf gives
        # the page rendered and saved by Qt: exportToImage would then georeference the PNG through GDAL, which
        # cannot update a PNG and prints "ERROR 6" on every export (the image itself was fine)
        image = exporter.renderPageToImage(0, QSize(), dpi)
        return (QgsLayoutExporter.ExportResult.Success if not image.isNull() and image.save(path, "PNG")
                else QgsLayoutExporter.ExportResult.FileError)

    png = _export(Path(png_path), write_png)
    pdf = None
    if pdf_path is not None:
        settings = QgsLayoutExporter.PdfExportSettings()
        settings.dpi = dpi
        pdf = _export(Path(pdf_path), lambda p: exporter.exportToPdf(p, settings))
    return png, pdf
