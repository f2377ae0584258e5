"""Draw an area on the map canvas: a drag-a-rectangle map tool and the outline that stays on the map.

``AreaDrawer.start()`` makes the rectangle tool the canvas's map tool; a drag draws a live rectangle, and on
release ``drawn(rectangle, crs)`` is emitted (canvas coordinates and CRS) and the previous map tool comes back.
A right click or Esc cancels. The outline of the area stays on the map (``show``) until ``clear()``: it
follows the canvas when its CRS changes, because it is kept with its own CRS.
"""

from __future__ import annotations

from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

from .. import compat

OUTLINE = QColor(227, 26, 28)  # a red that reads on imagery and on paletted predictions alike


def _band(canvas: QgsMapCanvas, fill_alpha: int) -> QgsRubberBand:
    band = QgsRubberBand(canvas, compat.GEOMETRY_POLYGON)
    band.setStrokeColor(OUTLINE)
    fill = QColor(OUTLINE)
    fill.setAlpha(fill_alpha)
    band.setFillColor(fill)
    band.setWidth(2)
    return band


class RectangleTool(QgsMapTool):
    """Press, drag, release: a rectangle in the canvas's coordinates (``rectangleDrawn``); right click or Esc:
    ``cancelled``."""

    rectangleDrawn = pyqtSignal(QgsRectangle)
    cancelled = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._start: Optional[QgsPointXY] = None
        self._live = _band(canvas, 40)

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.MouseButton.RightButton:
            self._cancel()
            return
        self._start = event.mapPoint()
        self._show(QgsRectangle(self._start, self._start))

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is not None:
            self._show(QgsRectangle(self._start, event.mapPoint()))

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        rectangle = QgsRectangle(self._start, event.mapPoint())  # normalised: min <= max
        self._start = None
        self._live.reset(compat.GEOMETRY_POLYGON)
        self.rectangleDrawn.emit(rectangle)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self._cancel()

    def deactivate(self) -> None:
        self._start = None
        self._live.reset(compat.GEOMETRY_POLYGON)
        super().deactivate()

    def _show(self, rectangle: QgsRectangle) -> None:
        self._live.setToGeometry(QgsGeometry.fromRect(rectangle), None)

    def _cancel(self) -> None:
        self._start = None
        self._live.reset(compat.GEOMETRY_POLYGON)
        self.cancelled.emit()


class AreaDrawer(QObject):
    """Owns the rectangle tool and the area's outline on one canvas; gives the canvas its previous tool back."""

    drawn = pyqtSignal(QgsRectangle, QgsCoordinateReferenceSystem)

    def __init__(self, canvas: QgsMapCanvas, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.tool = RectangleTool(canvas)
        self.outline = _band(canvas, 25)
        self.area: Optional[tuple[QgsRectangle, QgsCoordinateReferenceSystem]] = None  # what the outline shows
        self._previous: Optional[QgsMapTool] = None
        self._disposed = False
        self.tool.rectangleDrawn.connect(self._on_drawn)
        self.tool.cancelled.connect(self._restore_tool)
        canvas.destinationCrsChanged.connect(self._redraw)

    def is_drawing(self) -> bool:
        return self.canvas.mapTool() is self.tool

    def start(self) -> None:
        if self.is_drawing():
            return
        self._previous = self.canvas.mapTool()
        self.canvas.setMapTool(self.tool)

    def show(self, rectangle: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Outline an area given in any CRS (drawn, typed, or from features) on the canvas."""
        self.area = (QgsRectangle(rectangle), QgsCoordinateReferenceSystem(crs))
        self._redraw()

    def clear(self) -> None:
        self.area = None
        self.outline.reset(compat.GEOMETRY_POLYGON)

    def outline_geometry(self) -> QgsGeometry:
        """What the outline shows, in canvas coordinates (empty when cleared)."""
        return self.outline.asGeometry()

    def unload(self) -> None:
        """Stop drawing and take the outline and the live rectangle off the canvas (the dock is closing)."""
        if self.is_drawing():
            self._restore_tool()
        self.clear()

    def dispose(self) -> None:
        """Take the tool's items off the canvas for good (the plugin unloads); the drawer is unusable after."""
        self.unload()
        if self._disposed:
            return
        self._disposed = True
        self.canvas.destinationCrsChanged.disconnect(self._redraw)
        for band in (self.outline, self.tool._live):
            if band.scene() is not None:
                band.scene().removeItem(band)

    def _on_drawn(self, rectangle: QgsRectangle) -> None:
        crs = self.canvas.mapSettings().destinationCrs()
        self._restore_tool()
        self.show(rectangle, crs)
        self.drawn.emit(rectangle, crs)

    def _restore_tool(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None and not sip.isdeleted(previous):
            self.canvas.setMapTool(previous)
        else:
            self.canvas.unsetMapTool(self.tool)

    def _redraw(self) -> None:
        self.outline.reset(compat.GEOMETRY_POLYGON)
        if self.area is None:
            return
        rectangle, crs = self.area
        target = self.canvas.mapSettings().destinationCrs()
        if crs.isValid() and target.isValid() and crs != target:
            rectangle = QgsCoordinateTransform(crs, target, QgsProject.instance()).transformBoundingBox(rectangle)
        if not rectangle.isEmpty():
            self.outline.setToGeometry(QgsGeometry.fromRect(rectangle), None)
