"""``check``: 'Test connection' for one connector: its credentials are set and its service answers them.

Each connector is asked the cheapest question that proves both: an OAuth token (Sentinel Hub, IBM
Research STAC on its default endpoint), the STAC root (Sentinel AWS, NASA's CMR), the collections list
(IBM Research STAC on a redirected endpoint), a one-point forecast (The Weather Company), the API root
(Climate Data Store).
"""

from __future__ import annotations

import os
import time
from typing import Any

from .. import protocol
from ..protocol import ExternalError
from ..workspace import Workspace
from . import access, network
from .spec import CheckSpec


def request_for(connector_id: str, endpoint: str) -> dict[str, Any]:
    """The HTTP request that tests a connector (credentials taken from this job's environment)."""
    env = os.environ.get
    if connector_id == "sentinelhub":
        return {"method": "POST", "url": access.facts(connector_id)["test_url"],
                "data": {"grant_type": "client_credentials", "client_id": env("SH_CLIENT_ID", ""),
                         "client_secret": env("SH_CLIENT_SECRET", "")}}
    if connector_id == "nasa_earthdata":
        return {"method": "GET", "url": access.facts(connector_id)["test_url"],
                "headers": {"Authorization": f"Bearer {env('NASA_EARTH_BEARER_TOKEN', '')}"}}
    if connector_id == "TheWeatherCompany":
        return {"method": "GET", "url": access.facts(connector_id)["test_url"],
                "params": {"geocode": "0.0,0.0", "format": "json", "units": "m", "language": "en-US",
                           "apiKey": env("THE_WEATHER_COMPANY_API_KEY", "")}}
    if connector_id == "climate_data_store":
        return {"method": "GET", "url": endpoint.rstrip("/") + "/retrieve/v1/processes",
                "headers": {"PRIVATE-TOKEN": env("CDSAPI_KEY", "")}}
    if connector_id == "IBMResearchSTAC":
        if endpoint != access.facts(connector_id)["endpoint"]:
            return {"method": "GET", "url": endpoint.rstrip("/") + "/collections"}
        issuer = env("APPID_ISSUER", "").rstrip("/")
        return {"method": "POST", "url": f"{issuer}/token",
                "json": {"grant_type": "password", "username": env("APPID_USERNAME", ""),
                         "password": env("APPID_PASSWORD", ""), "client_id": env("CLIENT_ID", ""),
                         "client_secret": env("CLIENT_SECRET", "")}}
    return {"method": "GET", "url": endpoint}  # sentinel_aws and other STAC APIs: the landing page


def check(spec: CheckSpec) -> dict[str, Any]:
    import requests

    info = access.facts(spec.connector)
    access.check_credentials(spec.connector, spec.endpoint)
    network.install(network.Policy(timeout_s=spec.timeout_s, retries=1))
    endpoint = access.endpoint_of(spec.connector, spec.endpoint)
    request = request_for(spec.connector, endpoint)
    protocol.progress("check", 0.2, f"asking {request['url'].split('?')[0]}")
    started = time.monotonic()
    with access.connector_errors(spec.connector, request["url"], "testing the connection"):
        response = requests.request(**request)
    seconds = time.monotonic() - started
    if response.status_code in (401, 403):
        raise ExternalError("credentials_rejected", f"{info['name']} rejected the credentials "
                            f"(HTTP {response.status_code}).", f"Check them in {access.WHERE_CREDENTIALS}.")
    if response.status_code >= 400:
        raise ExternalError("connector_http_error", f"{info['name']}: {request['url'].split('?')[0]} answered "
                            f"HTTP {response.status_code}.", "Check the endpoint URL and the service status.")
    protocol.progress("check", 1.0, f"{info['name']} answered in {seconds * 1000:.0f} ms")
    return {"connector": spec.connector, "ok": True, "endpoint": endpoint, "status": response.status_code,
            "latency_ms": round(seconds * 1000)}


def run(spec: CheckSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, check(spec)
