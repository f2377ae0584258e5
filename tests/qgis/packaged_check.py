"""Run inside a real QGIS desktop (`qgis --code`): report on the installed GeoStudio plugin, then quit.

Writes JSON to $CHECK_OUT: whether the plugin is active, where it was loaded from, which docks open,
which Processing algorithms its provider lists."""

import json
import os
import sys
import time

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.utils import active_plugins, iface, plugins


def report():
    result = {"active": "geostudio_plugin" in active_plugins, "docks": {}, "algorithms": []}
    try:
        module = sys.modules.get("geostudio_plugin")
        result["loaded_from"] = getattr(module, "__file__", None)
        plugin = plugins.get("geostudio_plugin")
        for key in ("connectors", "onboarding", "tuning", "inference"):
            plugin.toggle_dock(key, True)
            QgsApplication.processEvents()
            result["docks"][key] = plugin.docks[key].isVisible()
        provider = QgsApplication.processingRegistry().providerById("geostudio")
        result["algorithms"] = [a.id() for a in provider.algorithms()] if provider else []
        deadline = time.monotonic() + 240  # the Connectors dock loads the catalog through the engine
        while QgsApplication.taskManager().countActiveTasks() and time.monotonic() < deadline:
            QgsApplication.processEvents()
            time.sleep(0.05)
        result["catalog_connectors"] = plugin.docks["connectors"].ui.tree.topLevelItemCount()
        heavy = ("torch", "terratorch", "terrakit", "rasterio", "lightning", "pydantic")
        result["heavy_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    except Exception as exc:  # report, do not hang QGIS
        result["error"] = repr(exc)
    with open(os.environ["CHECK_OUT"], "w") as handle:
        json.dump(result, handle)
    QgsProject.instance().setDirty(False)  # no "save changes?" dialog on the way out
    manager = QgsApplication.taskManager()  # nor "tasks are running, quit anyway?" (a modal dialog nobody answers)
    manager.cancelAll()
    deadline = time.monotonic() + 30
    while manager.countActiveTasks() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    iface.actionExit().trigger()


QTimer.singleShot(int(os.environ.get("CHECK_WAIT_MS", "1500")), report)
