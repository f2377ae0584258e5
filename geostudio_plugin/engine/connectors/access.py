"""The steps of opening a Terrakit connector (``session.open_collection`` runs them in order): validate
names, check credentials, redirect endpoints, open the connector, map its failures to error events; and
the catalog's connector access states.

Every failure becomes an ``error`` event that names the connector and says what to check (its kind is
``failures.classify``'s); secrets never appear in it (protocol redacts the credential values of the job).
"""

from __future__ import annotations

import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

from .. import patches, protocol
from ..catalog import connector_facts, connectors
from ..protocol import EngineError, ExternalError, SpecError
from .failures import classify

WHERE_CREDENTIALS = "GeoStudio > Connectors: select the connector, then 'Credentials…'"
WHERE_ENDPOINT = "GeoStudio > Connectors: select the connector, then 'Credentials…' (endpoint URL)"


def facts(connector_id: str) -> dict[str, Any]:
    known = {c["id"]: c for c in connector_facts()}
    if connector_id not in known:
        raise SpecError("unknown_connector", f"Unknown connector '{connector_id}'.",
                        "Use one of: " + ", ".join(sorted(known)))
    return known[connector_id]


def collection(connector_id: str, name: str, workspace=None, extra: Optional[list] = None) -> dict[str, Any]:  # noqa: ANN001
    """The catalog entry of a collection; Studio spellings Terrakit lacks are accepted with a notice."""
    entry = next(c for c in connectors(workspace) if c["id"] == connector_id)
    collections = {c["collection"]: c for c in entry["collections"] + list(extra or [])}
    alias = facts(connector_id).get("aliases", {}).get(name)
    if name not in collections and alias in collections:
        protocol.log(f"{connector_id}: collection '{name}' is the Studio's name for '{alias}'; using '{alias}'.",
                     "warning")
        name = alias
    if name not in collections:
        raise SpecError("unknown_collection", f"{entry['name']} has no collection '{name}'.",
                        "Use one of: " + (", ".join(sorted(collections)) or "(none known: check the endpoint)"))
    return collections[name]


def band_keys(connector_id: str, coll: dict[str, Any], names: list[str]) -> list[str]:
    """Request names for the bands (alternative names such as B04 -> red accepted); default R, G, B."""
    if not names:
        rgb = {b["RGB_band"]: b["band_name"] for b in coll["bands"] if b.get("RGB_band")}
        if not all(c in rgb for c in "RGB"):
            raise SpecError("bands_required", f"Collection '{coll['collection']}' has no R/G/B bands to default to.",
                            "Name the bands to fetch: " + ", ".join(b["band_name"] for b in coll["bands"]))
        return [rgb[c] for c in "RGB"]
    lookup = {}
    for band in coll["bands"]:
        for alias in [band["band_name"], *band.get("alt_names", [])]:
            lookup[alias.lower()] = band["band_name"]
    unknown = [n for n in names if n.lower() not in lookup]
    if unknown:
        raise SpecError("unknown_band", f"{connector_id} / {coll['collection']} has no band(s) {unknown}.",
                        "Use: " + ", ".join(b["band_name"] for b in coll["bands"]))
    return [lookup[n.lower()] for n in names]


def required_credentials(connector_id: str, endpoint: Optional[str]) -> list[dict[str, Any]]:
    info = facts(connector_id)
    if info.get("credentials_only_for_default_endpoint") and endpoint:
        return []
    return info.get("credentials", [])


def check_credentials(connector_id: str, endpoint: Optional[str]) -> None:
    missing = [c for c in required_credentials(connector_id, endpoint) if not os.environ.get(c["env"])]
    if missing:
        names = ", ".join(f"{c['label']} ({c['env']})" for c in missing)
        raise EngineError("credentials_missing", f"{facts(connector_id)['name']} needs credentials that are not "
                          f"set: {names}.", f"Enter them in {WHERE_CREDENTIALS}; they are kept in the QGIS "
                          "authentication database. From the command line, set the environment variables.",
                          exit_code=protocol.EXIT_INPUT)


def apply_endpoint(connector_id: str, endpoint: Optional[str]) -> Optional[str]:
    """Redirect a connector everywhere Terrakit creates it, its pipeline code included."""
    if not endpoint:
        return None
    info = facts(connector_id)
    if not info.get("endpoint_override"):
        raise SpecError("endpoint_not_supported", f"{info['name']} cannot be redirected to another endpoint.",
                        "Remove the endpoint override for this connector.")
    if connector_id == "IBMResearchSTAC":
        patches.ibm_stac_endpoint(endpoint)
    elif connector_id == "sentinel_aws":
        patches.sentinel_aws_endpoint(endpoint)
    return endpoint


def endpoint_of(connector_id: str, endpoint: Optional[str]) -> str:
    return endpoint or facts(connector_id).get("endpoint", "")


# ------------------------------------------------------------------ errors


@contextmanager
def connector_errors(connector_id: str, endpoint: str, doing: str) -> Iterator[None]:
    """Turn a failure inside Terrakit into an error event that names the connector and what to check."""
    name = facts(connector_id)["name"]
    try:
        yield
    except (EngineError, protocol.Cancelled):
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to user-facing errors below
        kind = classify(exc)
        detail = protocol.redact(f"{type(exc).__name__}: {exc}")[:600]
        failing = re.search(r"https?://[^\s'\"]+", detail)  # the URL that failed (an asset), else the endpoint
        host = urlparse(failing.group(0) if failing else endpoint).netloc or endpoint
        if kind == "nodata":
            raise EngineError("no_data", f"{name}: nothing found while {doing}.", "Widen the dates or the area, "
                              "or raise the maximum cloud cover.", details=[detail]) from None
        if kind == "invalid":
            raise EngineError("invalid_request", f"{name} refused the request while {doing}: {detail}",
                              "Check the collection, bands, dates and area.", exit_code=protocol.EXIT_INPUT) from None
        messages = {
            "timeout": (f"{name}: {host} did not answer in time while {doing}.",
                        "The server is slow or unreachable; try again later, or check your network and proxy."),
            "refused": (f"{name}: cannot connect to {host} while {doing}.",
                        f"Check that the server runs and the endpoint URL is right ({WHERE_ENDPOINT}), and your "
                        "network or proxy settings."),
            "server": (f"{name}: {host} answered with a server error while {doing}.",
                       "The service has a problem; try again later."),
            "truncated": (f"{name}: a download from {host} broke off or was unreadable while {doing}.",
                          "The connection dropped or the file on the server is damaged; try again later."),
            "other": (f"{name} failed while {doing}: {detail}", "See the engine log for details."),
        }
        message, hint = messages[kind]
        raise ExternalError(f"connector_{kind}", message, hint, details=[detail]) from None


def open_connector(connector_id: str, endpoint: Optional[str]) -> Any:
    from terrakit import DataConnector

    with connector_errors(connector_id, endpoint_of(connector_id, endpoint), "connecting"):
        return DataConnector(connector_id).connector


# ----------------------------------------------------------- access states


def _probe(url: str, timeout_s: float) -> Optional[str]:
    """None when something answers at url's host:port within the timeout, else the reason."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{parsed.hostname}:{port}: {exc.strerror or exc}"


def check_access(options: Any) -> dict[str, dict[str, Any]]:
    """ready / credentials missing / unreachable, per connector (connects to each endpoint's host)."""
    states: dict[str, dict[str, Any]] = {}
    jobs = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for info in connector_facts():
            endpoint = options.endpoints.get(info["id"]) or info.get("endpoint", "")
            jobs[info["id"]] = (endpoint, pool.submit(_probe, endpoint, options.timeout_s) if endpoint else None)
        for info in connector_facts():
            endpoint, future = jobs[info["id"]]
            needed = required_credentials(info["id"], options.endpoints.get(info["id"]))
            configured = options.credentials_configured.get(info["id"], False) or \
                all(os.environ.get(c["env"]) for c in needed)
            reason = future.result() if future else None
            if needed and not configured:
                state = {"state": "credentials missing",
                         "detail": "needs " + ", ".join(c["label"] for c in needed) + f"; enter them in {WHERE_CREDENTIALS}"}
            elif reason:
                state = {"state": "unreachable", "detail": f"{endpoint}: {reason}"}
            else:
                state = {"state": "ready", "detail": endpoint}
            states[info["id"]] = {**state, "endpoint": endpoint}
    return states


def discover_collections(options: Any) -> dict[str, list[dict[str, Any]]]:
    """Collections only a live catalogue knows (IBM Research STAC); skipped when it cannot be reached."""
    endpoint = options.endpoints.get("IBMResearchSTAC")
    if not endpoint and not all(os.environ.get(c["env"]) for c in facts("IBMResearchSTAC")["credentials"]):
        return {}
    from . import network

    network.install(network.Policy(timeout_s=options.timeout_s, retries=0))
    apply_endpoint("IBMResearchSTAC", endpoint)
    started = time.monotonic()
    try:
        connector = open_connector("IBMResearchSTAC", endpoint)
        with connector_errors("IBMResearchSTAC", endpoint, "listing collections"):
            collections = ibm_collections(connector)
    except EngineError as exc:  # the catalog still lists everything else
        protocol.log(f"IBM Research STAC collections not listed: {exc.message}", "warning")
        return {}
    protocol.log(f"IBM Research STAC: {len(collections)} collection(s) in {time.monotonic() - started:.1f} s")
    return {"IBMResearchSTAC": collections}


def ibm_collections(connector: Any) -> list[dict[str, Any]]:
    """Catalog entries for an IBM Research STAC: bands are the NetCDF variables of each collection."""
    from terrakit.general_utils.rest import get

    entries = []
    for collection_id in connector.collections:
        response = get(url=f"{connector.stac_url}/collections/{collection_id}/items", headers=connector.headers,
                       params={"limit": 1})
        features = response.json().get("features", [])
        props = features[0]["properties"] if features else {}
        variables = props.get("cube:variables", {})
        dims = props.get("cube:dimensions", {})
        x = next((d for d in dims.values() if d.get("axis") == "x"), {})
        entries.append({
            "collection": collection_id, "long_name": collection_id, "description": "", "modality_tag": None,
            "resolution_m": abs(x.get("step")) if isinstance(x.get("step"), (int, float)) else None,
            "cloud_mask_band": None, "cloud_masking": None, "source": "server",
            "bands": [{"band_name": name, "resolution": None, "description": v.get("description", ""),
                       "RGB_band": None, "alt_names": []} for name, v in variables.items()],
        })
    return entries
