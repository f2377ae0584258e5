"""Turn engine outputs into styled QGIS layers (main thread only).

Styles arrive in the Studio's ``geoserver_style`` shape: ``segmentation`` and
``regression`` lists of {color, label, opacity, quantity}, ``rgb`` lists of
{label, channel, minValue, maxValue}. An inference's confidence layer comes as a two-stop black-to-white
``regression`` ramp with ``visible_by_default`` false: a grey layer, switched off, under the prediction.
Nodata (255 for uint8 class ids and confidence, NaN for regression) is read from the files by GDAL.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import json

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsJsonUtils,
    QgsPalLayerSettings,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsLayerTreeGroup,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRasterTransparency,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from . import compat


def _colour(hex_colour: str, opacity: Any = 1) -> QColor:
    colour = QColor(hex_colour)
    try:
        alpha = float(opacity)
    except (TypeError, ValueError):
        alpha = 1.0
    colour.setAlphaF(max(0.0, min(1.0, alpha)))
    return colour


def paletted_renderer(layer: QgsRasterLayer, entries: Iterable[dict[str, Any]]) -> QgsPalettedRasterRenderer:
    """One class per entry. A class with opacity 0 keeps its colour (so the legend shows a swatch) and is made
    transparent on the map through the renderer's pixel transparency instead."""
    entries = list(entries)
    hidden = [int(float(e["quantity"])) for e in entries if _colour(e["color"], e.get("opacity", 1)).alpha() == 0]
    classes = [QgsPalettedRasterRenderer.Class(
        int(float(e["quantity"])),
        _colour(e["color"], 1 if int(float(e["quantity"])) in hidden else e.get("opacity", 1)),
        str(e.get("label", e["quantity"]))) for e in entries]
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    if hidden:
        transparency = QgsRasterTransparency()
        pixels = []
        for value in hidden:
            pixel = QgsRasterTransparency.TransparentSingleValuePixel()
            pixel.min, pixel.max, pixel.percentTransparent = float(value), float(value), 100.0
            pixels.append(pixel)
        transparency.setTransparentSingleValuePixelList(pixels)
        renderer.setRasterTransparency(transparency)
    return renderer


def pseudocolor_renderer(layer: QgsRasterLayer, entries: list[dict[str, Any]]) -> QgsSingleBandPseudoColorRenderer:
    stops = sorted(entries, key=lambda e: float(e["quantity"]))
    ramp = QgsColorRampShader(float(stops[0]["quantity"]), float(stops[-1]["quantity"]))
    ramp.setColorRampType(compat.SHADER_INTERPOLATED)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(float(e["quantity"]),
                                                                 _colour(e["color"], e.get("opacity", 1)),
                                                                 str(e.get("label", e["quantity"]))) for e in stops])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(float(stops[0]["quantity"]))  # the legend and the layer panel show the range
    renderer.setClassificationMax(float(stops[-1]["quantity"]))
    return renderer


def apply_style(layer: QgsRasterLayer, style: Optional[dict[str, Any]]) -> None:
    if not style:
        return
    if style.get("segmentation"):
        layer.setRenderer(paletted_renderer(layer, style["segmentation"]))
    elif style.get("regression"):
        layer.setRenderer(pseudocolor_renderer(layer, style["regression"]))
    elif style.get("rgb"):
        channels = style["rgb"]
        renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *(int(c["channel"]) for c in channels[:3]))
        setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
                   renderer.setBlueContrastEnhancement)
        for setter, channel in zip(setters, channels[:3]):
            enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(int(channel["channel"])))
            enhancement.setMinimumValue(float(channel["minValue"]))
            enhancement.setMaximumValue(float(channel["maxValue"]))
            enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
            setter(enhancement)
        layer.setRenderer(renderer)
    layer.triggerRepaint()


def grey_stretch(layer: QgsRasterLayer, band: int = 1) -> None:
    """Min/max stretch of one band from its statistics: how a SAR or single-band input reads best."""
    provider = layer.dataProvider()
    stats = provider.bandStatistics(band, compat.BAND_STAT_MIN | compat.BAND_STAT_MAX)
    renderer = QgsSingleBandGrayRenderer(provider, band)
    enhancement = QgsContrastEnhancement(provider.dataType(band))
    enhancement.setMinimumValue(stats.minimumValue)
    enhancement.setMaximumValue(stats.maximumValue)
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
    renderer.setContrastEnhancement(enhancement)
    layer.setRenderer(renderer)


def result_group(name: str, project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    root = (project or QgsProject.instance()).layerTreeRoot()
    return root.findGroup(name) or root.insertGroup(0, name)


def add_to_group(layer: QgsRasterLayer, group: QgsLayerTreeGroup, project: Optional[QgsProject] = None,
                 visible: bool = True) -> QgsRasterLayer:
    (project or QgsProject.instance()).addMapLayer(layer, False)
    node = group.insertLayer(0, layer)
    node.setItemVisibilityChecked(visible)
    return layer


def load_inference_layers(run_summary: dict[str, Any], group_name: Optional[str] = None,
                          project: Optional[QgsProject] = None) -> list[QgsRasterLayer]:
    """Load every layer of an ``infer`` result, styled, into one group (ordered by z_index)."""
    group = result_group(group_name or f"GeoStudio: {run_summary.get('inference_id', 'inference')}", project)
    layers = []
    for spec in sorted(run_summary.get("layers", []), key=lambda l: l.get("z_index", 0)):
        layer = QgsRasterLayer(spec["path"], spec.get("display_name", "Prediction"))
        if not layer.isValid():
            raise RuntimeError(f"QGIS cannot open the prediction {spec['path']}")
        apply_style(layer, spec.get("geoserver_style"))
        add_to_group(layer, group, project, bool(spec.get("visible_by_default", True)))
        layers.append(layer)
    return layers


def show_bands(layer: QgsRasterLayer, rgb: Optional[list[int]]) -> None:
    """A fetched image: true colour from its R, G, B bands (2-98 % stretch), else its first band in grey."""
    provider = layer.dataProvider()
    if rgb and len(rgb) == 3:
        layer.setRenderer(QgsMultiBandColorRenderer(provider, *rgb))
    else:
        layer.setRenderer(QgsSingleBandGrayRenderer(provider, 1))
    layer.setContrastEnhancement(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum,
                                 compat.RANGE_LIMIT_CUMULATIVE_CUT)
    layer.triggerRepaint()


def footprint_shapes(collection: dict[str, Any]) -> list[QgsGeometry]:
    """The geometries of a GeoJSON FeatureCollection (a search's footprints), in its order. Only the geometry is
    read: QGIS's JSON reader rewrites ISO dates as 2018/08/30, so callers set attributes from the properties."""
    return [f.geometry() for f in QgsJsonUtils.stringToFeatureList(json.dumps(collection), QgsFields())]


def footprints_layer(collection: dict[str, Any], name: str) -> QgsVectorLayer:
    """A temporary layer of scene footprints (id, date, cloud cover), outlined and labelled by date."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326&field=id:string(80)&field=date:string(10)"
                           "&field=cloud_cover:double", name, "memory")
    fields: QgsFields = layer.fields()
    features = []
    for shape, source in zip(footprint_shapes(collection), collection["features"]):
        feature = QgsFeature(fields)
        feature.setGeometry(shape)
        props = source["properties"]
        feature.setAttributes([props.get("id"), props.get("date"), props.get("cloud_cover")])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    layer.updateExtents()
    layer.renderer().setSymbol(QgsFillSymbol.createSimple(
        {"color": "255,127,0,30", "outline_color": "255,127,0,255", "outline_width": "0.6"}))
    labels = QgsPalLayerSettings()
    labels.fieldName = "date"
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)
    return layer


def zoom_to(canvas, layers: Iterable[Any], project: Optional[QgsProject] = None) -> None:  # noqa: ANN001
    """Show what was just loaded: the map canvas zooms to the layers' combined extent (in the canvas's CRS)."""
    project = project or QgsProject.instance()
    target = canvas.mapSettings().destinationCrs()
    extent = None
    for layer in layers:
        if layer is None or not layer.isValid():
            continue
        box = layer.extent()
        if target.isValid() and layer.crs().isValid() and layer.crs() != target:
            box = QgsCoordinateTransform(layer.crs(), target, project).transformBoundingBox(box)
        if extent is None:
            extent = box
        else:
            extent.combineExtentWith(box)
    if extent is not None and not extent.isEmpty():
        canvas.setExtent(extent)
        canvas.refresh()
