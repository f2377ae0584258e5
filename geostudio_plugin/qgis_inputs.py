"""QGIS objects -> the plain values ``contract``'s builders take; each rule once, for the docks and Processing.

- an extent (a rectangle and its CRS, or a QgsReferencedRectangle) -> an EPSG:4326 bbox list;
- a layer's selected features -> their extent in EPSG:4326 (their shapes transformed, not their box);
- an extent widget -> that bbox, or the map canvas extent where a dock falls back to it;
- a layer -> the path of its file, as its data provider decodes its source.
"""

from __future__ import annotations

from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsGeometry,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRectangle,
    QgsReferencedRectangle,
)

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
DENSIFY_POINTS = 20  # points added along each edge of a shape before it is transformed


def bbox_4326(extent: QgsRectangle, crs: Optional[QgsCoordinateReferenceSystem] = None,
              transform_context: Optional[QgsCoordinateTransformContext] = None) -> Optional[list[float]]:
    """[minx, miny, maxx, maxy] in EPSG:4326 (the Studio's bbox convention); None for a null or empty extent.

    ``crs`` defaults to the extent's own CRS when it is a QgsReferencedRectangle, else EPSG:4326. The
    rectangle is transformed as a whole (its edges densified), so a projected extent's bbox covers it.
    ``transform_context`` defaults to the current project's (Processing passes its context's).
    """
    if extent is None or extent.isNull() or extent.isEmpty():
        return None
    if crs is None:
        crs = extent.crs() if isinstance(extent, QgsReferencedRectangle) else WGS84
    rect = QgsRectangle(extent)
    if crs.isValid() and crs != WGS84:
        context = transform_context if transform_context is not None else QgsProject.instance().transformContext()
        rect = QgsCoordinateTransform(crs, WGS84, context).transformBoundingBox(rect)
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]


def selection_extent_4326(layer, transform_context: Optional[QgsCoordinateTransformContext] = None,
                          ) -> Optional[QgsRectangle]:  # noqa: ANN001 - QgsVectorLayer
    """The combined extent of a vector layer's selected features in EPSG:4326 (None without a selection).

    The features' shapes are transformed, not their bounding box: a polygon's extent in longitude/latitude
    is that of its own outline (edges densified, as they curve once transformed), which a transformed
    rectangle would overstate for any shape that does not fill its box.
    """
    context = transform_context if transform_context is not None else QgsProject.instance().transformContext()
    transform = QgsCoordinateTransform(layer.crs(), WGS84, context) if layer.crs() != WGS84 else None
    extent: Optional[QgsRectangle] = None
    for feature in layer.getSelectedFeatures():
        shape = QgsGeometry(feature.geometry())
        if shape.isEmpty():
            continue
        shape = shape.densifyByCount(DENSIFY_POINTS)
        if transform is not None:
            shape.transform(transform)
        box = shape.boundingBox()
        if extent is None:
            extent = QgsRectangle(box)
        else:
            extent.combineExtentWith(box)
    return extent


def canvas_bbox(canvas) -> Optional[list[float]]:  # noqa: ANN001 - QgsMapCanvas
    """The map canvas's visible extent as an EPSG:4326 bbox."""
    return bbox_4326(canvas.extent(), canvas.mapSettings().destinationCrs())


def widget_bbox(widget, canvas=None) -> Optional[list[float]]:  # noqa: ANN001 - QgsExtentWidget, QgsMapCanvas
    """What a QgsExtentWidget holds as an EPSG:4326 bbox; where it holds nothing, the canvas extent when a
    canvas is given (the Connectors dock's fallback), else None (the Inference dock's "whole raster")."""
    bbox = bbox_4326(widget.outputExtent(), widget.outputCrs()) if widget.isValid() else None
    if bbox is None and canvas is not None:
        return canvas_bbox(canvas)
    return bbox


def layer_path(layer: Optional[QgsMapLayer]) -> str:
    """The file behind a layer ("" when there is none), as its provider decodes the source: no
    ``|layername=`` or other options; GDAL virtual paths (/vsizip/...) are kept whole."""
    if layer is None:
        return ""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    if path and parts.get("vsiPrefix"):
        path = f"{parts['vsiPrefix']}{path}{parts.get('vsiSuffix') or ''}"
    return str(path)
