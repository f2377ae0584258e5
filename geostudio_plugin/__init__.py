"""GeoStudio for QGIS.

This module must stay importable without QGIS: the engine runs as
``python -m geostudio_plugin.engine`` in its own virtual environment, which
has no ``qgis`` package. So nothing here imports QGIS at module level.
"""

from __future__ import annotations


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """Entry point called by QGIS when the plugin is loaded."""
    from .plugin import GeoStudioPlugin

    return GeoStudioPlugin(iface)
