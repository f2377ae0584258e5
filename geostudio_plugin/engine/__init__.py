"""The GeoStudio engine: everything heavy (Terrakit, TerraTorch, torch, rasterio).

Runs only in its own virtual environment as ``python -m geostudio_plugin.engine``;
it never imports QGIS or the plugin's GUI modules, and each command imports
its heavy libraries itself, on demand.
"""
