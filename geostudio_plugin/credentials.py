"""Connector credentials in the QGIS authentication database (encrypted with the master password).

Only the id of each connector's authentication config is kept in the settings; the values go to the
engine through the environment of one job (``secrets`` of EngineTask) and nowhere else.
"""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

PREFIX = "GeoStudio/connectors"
METHOD = "Basic"  # a generic encrypted key/value store; GeoStudio keys it by environment variable name


def _key(connector_id: str, what: str) -> str:
    return f"{PREFIX}/{connector_id}/{what}"


def _manager():  # noqa: ANN202 - QgsAuthManager
    return QgsApplication.authManager()


def authcfg_id(connector_id: str) -> str:
    return str(QgsSettings().value(_key(connector_id, "authcfg"), "") or "")


def available() -> bool:
    """The database can be read and written: its master password is set (QGIS asks for it when needed)."""
    manager = _manager()
    return not manager.isDisabled() and (manager.masterPasswordIsSet() or manager.setMasterPassword(True))


def store(connector_id: str, values: dict[str, str]) -> str:
    if not available():
        raise RuntimeError("The QGIS authentication database is locked: set or enter its master password.")
    manager = _manager()
    config = QgsAuthMethodConfig(METHOD)
    existing = authcfg_id(connector_id)
    if existing and manager.loadAuthenticationConfig(existing, config, False):
        config.setMethod(METHOD)
    config.setName(f"GeoStudio: {connector_id}")
    config.setUri("")
    config.setConfigMap({k: v for k, v in values.items() if v})
    ok = manager.updateAuthenticationConfig(config) if config.id() else manager.storeAuthenticationConfig(config)
    if not ok:
        raise RuntimeError(f"QGIS could not save the {connector_id} credentials in its authentication database.")
    QgsSettings().setValue(_key(connector_id, "authcfg"), config.id())
    return config.id()


def load(connector_id: str) -> dict[str, str]:
    """The stored values, keyed by environment variable name; empty when none are stored."""
    config_id = authcfg_id(connector_id)
    if not config_id or not available():
        return {}
    config = QgsAuthMethodConfig()
    if not _manager().loadAuthenticationConfig(config_id, config, True):
        return {}
    return {k: v for k, v in config.configMap().items() if v}


def configured(connector_id: str) -> bool:
    config_id = authcfg_id(connector_id)
    return bool(config_id) and config_id in _manager().configIds()


def configured_connectors() -> dict[str, bool]:
    """Whether QGIS holds credentials, for every connector of the catalog (what ``contract.catalog_spec`` takes;
    never the values)."""
    from .engine.catalog import connector_facts  # the engine's data file; plain JSON, no engine dependency

    return {c["id"]: configured(c["id"]) for c in connector_facts()}


def clear(connector_id: str) -> None:
    config_id = authcfg_id(connector_id)
    if config_id:
        _manager().removeAuthenticationConfig(config_id)
    QgsSettings().remove(_key(connector_id, "authcfg"))


def endpoint(connector_id: str) -> Optional[str]:
    """A user's endpoint override (a STAC mirror or private catalogue); not a secret."""
    value = str(QgsSettings().value(_key(connector_id, "endpoint"), "") or "").strip()
    return value or None


def set_endpoint(connector_id: str, url: str) -> None:
    QgsSettings().setValue(_key(connector_id, "endpoint"), url.strip())


def endpoints() -> dict[str, str]:
    """Every endpoint override the user set, by connector id (contract.resolve_endpoints gives them precedence)."""
    settings = QgsSettings()
    settings.beginGroup(PREFIX)
    ids = settings.childGroups()
    settings.endGroup()
    return {cid: url for cid in ids if (url := endpoint(cid))}


def for_payload(payload: dict) -> dict[str, str]:
    """The credentials of every connector an onboarding payload's data sources name (for from_labels)."""
    values: dict[str, str] = {}
    for source in payload.get("data_sources", []):
        if source.get("connector"):
            values.update(load(source["connector"]))
    return values


def for_model(record: dict) -> dict[str, str]:
    """The credentials of the connectors a tuned model's input comes from (its tune record's
    model_input_data_spec and data_spec.data_source): for an inference over an area, from the dock or Processing."""
    sources = list(record.get("model_input_data_spec") or [])
    sources.append(((record.get("data_spec") or {}).get("data_source")) or {})
    values: dict[str, str] = {}
    for connector in {str(s.get("connector")) for s in sources if s.get("connector")}:
        values.update(load(connector))
    return values
