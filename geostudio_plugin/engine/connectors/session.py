"""One connector session: everything search, fetch and from-labels need before they ask a connector.

``open_collection`` does, once and in this order: the connector's facts (``unknown_connector``), its
credentials (``credentials_missing``), the network policy (timeouts, the retry rule), the endpoint
redirection (``endpoint_not_supported``), opening the Terrakit connector (``connector_*``), the
collection (IBM Research STAC's are listed from its endpoint; ``unknown_collection``) and, when asked,
the band names (``unknown_band``, ``bands_required``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from .. import protocol
from . import access, network

T = TypeVar("T")


@dataclass
class ConnectorSession:
    connector_id: str
    facts: dict[str, Any]  # connectors.json entry: name, credentials, endpoint, …
    connector: Any  # the Terrakit connector object
    collection: dict[str, Any]  # the catalog entry (bands, roles, scale factors)
    endpoint: str  # where requests go: the override, else the connector's default
    override: Optional[str]  # the endpoint the job asked for, if any
    bands: list[str]  # request names of the bands asked for ([] when none were asked for)
    policy: network.Policy

    @property
    def name(self) -> str:
        """The collection's name as the connector knows it (a Studio alias resolved)."""
        return self.collection["collection"]

    @property
    def title(self) -> str:
        """The connector's display name."""
        return self.facts["name"]

    def errors(self, doing: str) -> AbstractContextManager[None]:
        """Failures inside become error events naming the connector, the server and what to check."""
        return access.connector_errors(self.connector_id, self.endpoint, doing)

    def retrying(self, action: Callable[[], T], prefix: str = "") -> T:
        """action, run again when the retry rule gives its failure to the step layer (logged)."""
        return network.with_retries(action, self.policy, lambda n, e: protocol.log(
            f"{prefix}retry {n} after: {protocol.redact(str(e))[:200]}", "warning"))


def open_collection(connector_id: str, collection: str, endpoint: Optional[str], workspace: Any,
                    bands: Optional[list[str]] = None,
                    announce: Callable[[str], None] = lambda message: None) -> ConnectorSession:
    """A session on one collection of one connector. ``bands=[]`` means the collection's R, G, B bands;
    ``None`` resolves none. ``announce`` gets "connecting to <connector>" before the connector opens."""
    info = access.facts(connector_id)
    access.check_credentials(connector_id, endpoint)
    policy = network.install()
    access.apply_endpoint(connector_id, endpoint)
    effective = access.endpoint_of(connector_id, endpoint)
    announce(f"connecting to {info['name']}")
    connector = access.open_connector(connector_id, endpoint)
    extra = None
    if connector_id == "IBMResearchSTAC":  # its collections exist only on its endpoint
        with access.connector_errors(connector_id, effective, "listing collections"):
            extra = access.ibm_collections(connector)
    coll = access.collection(connector_id, collection, workspace, extra)
    keys = access.band_keys(connector_id, coll, bands) if bands is not None else []
    return ConnectorSession(connector_id=connector_id, facts=info, connector=connector, collection=coll,
                            endpoint=effective, override=endpoint, bands=keys, policy=policy)
