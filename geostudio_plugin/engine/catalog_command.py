"""``catalog``: the catalog's data, optionally with each connector's access checked and run-time collections."""

from __future__ import annotations

from typing import Any

from . import protocol
from .catalog import build_catalog
from .connectors.spec import CatalogSpec
from .workspace import Workspace


def run(options: CatalogSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    protocol.progress("catalog", 0.1, "reading connectors and collections")
    access, discovered = None, None
    if options.check_access or options.discover:
        from .connectors.access import check_access, discover_collections

        protocol.progress("catalog", 0.3, "checking connector access")
        if options.discover:
            discovered = discover_collections(options)
        if options.check_access:
            access = check_access(options)
    catalog = build_catalog(workspace, access, discovered)
    n_collections = sum(len(c["collections"]) for c in catalog["connectors"])
    protocol.progress("catalog", 1.0, f"{len(catalog['connectors'])} connectors, {n_collections} collections")
    return {}, catalog
