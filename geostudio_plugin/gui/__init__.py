"""QGIS widgets: one module per dock, plus dialogs and message helpers."""
