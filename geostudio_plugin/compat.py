"""QGIS enum spellings that differ between the QGIS versions the plugin runs on (3.22 to 3.44, and QGIS 4).

Since QGIS 3.30 many enums of QGIS classes moved into ``Qgis`` as scoped enums (``QgsColorRampShader.Type``
became ``Qgis.ShaderInterpolationMethod``, ...). The old names stay as deprecated aliases through 3.x and
are dropped in QGIS 4 (Qt 6); QGIS 3.22 has only the old names. Each name below is resolved once, at import,
to the new spelling where this QGIS has it, else to the old one, so the rest of the plugin uses one name and
carries no version checks. Values are looked up with ``getattr`` chains and compared with ``is None``, never
with ``or``: some of these enum values are 0.

Qt's own enums need nothing here: the fully scoped spelling (``Qt.AlignmentFlag.AlignLeft``) works on
PyQt5 5.15 and on PyQt6 alike. tests/qgis/test_qt6_ready.py keeps the old spellings out of the other modules.
Standard library and ``qgis`` imports only.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsMapLayerProxyModel,
    QgsProcessing,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterNumber,
    QgsRasterBandStats,
    QgsRasterLayerTemporalProperties,
    QgsRasterMinMaxOrigin,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

__all__ = ["LAYER_FILTER_RASTER", "SHADER_INTERPOLATED", "BAND_STAT_MIN", "BAND_STAT_MAX",
           "RANGE_LIMIT_CUMULATIVE_CUT", "NUMBER_INTEGER", "NUMBER_DOUBLE",
           "GEOMETRY_POLYGON", "RASTER_TEMPORAL_FIXED", "DATETIME_DATE", "WKB_POLYGON", "WKB_NO_GEOMETRY",
           "FIELD_STRING", "FIELD_INT", "FIELD_DOUBLE", "SOURCE_TABLE", "SOURCE_POLYGON"]


def _enum(*candidates: tuple[Any, str, str]) -> Any:
    """The first ``owner.enum_name.member`` that exists, in the order given (newest spelling first)."""
    for owner, enum_name, member in candidates:
        value = getattr(getattr(owner, enum_name, None), member, None)
        if value is not None:
            return value
    spelled = " / ".join(f"{getattr(o, '__name__', o)}.{e}.{m}" for o, e, m in candidates)
    raise AttributeError(f"this QGIS has none of {spelled}")


#: Raster layers only, for QgsMapLayerComboBox.setFilters: Qgis.LayerFilter (3.34+), else
#: QgsMapLayerProxyModel.Filter (3.22).
LAYER_FILTER_RASTER = _enum((Qgis, "LayerFilter", "RasterLayer"),
                            (QgsMapLayerProxyModel, "Filter", "RasterLayer"))

#: Linear interpolation between colour-ramp stops: Qgis.ShaderInterpolationMethod.Linear (3.38 docs), else
#: QgsColorRampShader.Type.Interpolated (3.22). Note the member's new name.
SHADER_INTERPOLATED = _enum((Qgis, "ShaderInterpolationMethod", "Linear"),
                            (QgsColorRampShader, "Type", "Interpolated"))

#: Band statistics flags: Qgis.RasterBandStatistic (3.38 docs), else QgsRasterBandStats.Stats (3.22).
BAND_STAT_MIN = _enum((Qgis, "RasterBandStatistic", "Min"), (QgsRasterBandStats, "Stats", "Min"))
BAND_STAT_MAX = _enum((Qgis, "RasterBandStatistic", "Max"), (QgsRasterBandStats, "Stats", "Max"))

#: Cumulative-cut min/max limits: Qgis.RasterRangeLimit (3.44 docs), else QgsRasterMinMaxOrigin.Limits (3.22
#: and 3.40).
RANGE_LIMIT_CUMULATIVE_CUT = _enum((Qgis, "RasterRangeLimit", "CumulativeCut"),
                                   (QgsRasterMinMaxOrigin, "Limits", "CumulativeCut"))

#: Processing number parameter types: Qgis.ProcessingNumberParameterType (3.36), else
#: QgsProcessingParameterNumber.Type (3.22).
NUMBER_INTEGER = _enum((Qgis, "ProcessingNumberParameterType", "Integer"),
                       (QgsProcessingParameterNumber, "Type", "Integer"))
NUMBER_DOUBLE = _enum((Qgis, "ProcessingNumberParameterType", "Double"),
                      (QgsProcessingParameterNumber, "Type", "Double"))

#: Polygon rubber bands: Qgis.GeometryType (3.30), else QgsWkbTypes.GeometryType (3.22).
GEOMETRY_POLYGON = _enum((Qgis, "GeometryType", "Polygon"), (QgsWkbTypes, "GeometryType", "PolygonGeometry"))

#: A raster layer shown for one fixed time range (Temporal Controller): Qgis.RasterTemporalMode (3.38 docs),
#: else QgsRasterLayerTemporalProperties.TemporalMode (3.22).
RASTER_TEMPORAL_FIXED = _enum((Qgis, "RasterTemporalMode", "FixedTemporalRange"),
                              (QgsRasterLayerTemporalProperties, "TemporalMode", "ModeFixedTemporalRange"))

#: A Processing date parameter (no time): Qgis.ProcessingDateTimeParameterDataType (3.36), else
#: QgsProcessingParameterDateTime.Type (3.22).
DATETIME_DATE = _enum((Qgis, "ProcessingDateTimeParameterDataType", "Date"),
                      (QgsProcessingParameterDateTime, "Type", "Date"))

#: Feature sink geometry types: Qgis.WkbType (3.30), else QgsWkbTypes.Type (3.22).
WKB_POLYGON = _enum((Qgis, "WkbType", "Polygon"), (QgsWkbTypes, "Type", "Polygon"))
WKB_NO_GEOMETRY = _enum((Qgis, "WkbType", "NoGeometry"), (QgsWkbTypes, "Type", "NoGeometry"))

#: QgsField types: QMetaType.Type from QGIS 3.38 (QVariant.Type is gone in Qt 6), QVariant.Type before (3.22's
#: QgsField takes nothing else). Both exist in PyQt5, so the choice is by version, not by lookup.
_FIELD_TYPES = (QMetaType, "Type", ("QString", "Int", "Double")) if Qgis.QGIS_VERSION_INT >= 33800 else \
    (QVariant, "Type", ("String", "Int", "Double"))
FIELD_STRING, FIELD_INT, FIELD_DOUBLE = (_enum((_FIELD_TYPES[0], _FIELD_TYPES[1], name)) for name in _FIELD_TYPES[2])

#: Feature sink layer types: Qgis.ProcessingSourceType (3.36), else QgsProcessing.SourceType (3.22). A table
#: (no geometry) is a "vector" sink.
SOURCE_TABLE = _enum((Qgis, "ProcessingSourceType", "Vector"), (QgsProcessing, "SourceType", "TypeVector"))
SOURCE_POLYGON = _enum((Qgis, "ProcessingSourceType", "VectorPolygon"),
                       (QgsProcessing, "SourceType", "TypeVectorPolygon"))
