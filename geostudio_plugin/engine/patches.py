"""Every change the engine makes to third-party code or process-wide library state, in one place.

Terrakit sets no HTTP timeout and offers no endpoint override for most connectors, and its pipeline
builds its own connectors, so some behaviour can only be changed from outside. Each change is made
here through one of three primitives that remember the original value the first time:

- ``patch_attr(owner, name, value)``: a class or module attribute (``requests.Session.send``).
- ``set_env(name, value)``: an environment variable (GDAL reads its HTTP options from there;
  IBM Research STAC's endpoint is one).
- ``set_item(mapping, key, value)``: an entry of a library's configuration dict (fsspec's).

Patching the same thing again replaces the patch and keeps the first original. ``undo_all()``
restores every original, newest first; ``__main__`` calls it when a command ends. ``installed()``
names what is patched now.

The patches themselves (each takes its settings and can be applied again with new ones):

- ``requests_http(timeout, make_retry)``: requests sessions get a default (connect, read) timeout on
  every send and an ``HTTPAdapter`` with ``make_retry()``; adapters that libraries create with an
  integer ``max_retries`` (pystac-client, Terrakit's REST helpers) get ``make_retry()`` instead.
- ``gdal_http(options)``: GDAL_HTTP_* / CPL_VSIL_CURL_* variables for /vsicurl/ reads.
- ``fsspec_http_timeout(timeout)``: the aiohttp timeout of fsspec's http/https filesystems.
- ``sentinel_aws_endpoint(url)``: Terrakit's ``Sentinel_AWS.__init__`` sets ``stac_url`` to url,
  so connectors Terrakit's pipeline creates itself are redirected too.
- ``ibm_stac_endpoint(url)``: ``IBMRESEARCH_STAC_URL``, Terrakit's own override.
"""

from __future__ import annotations

import os
from typing import Any, Callable, MutableMapping

_MISSING = object()

# key -> (description, undo); insertion order is patch order
_undo: dict[tuple[Any, ...], tuple[str, Callable[[], None]]] = {}
_originals: dict[tuple[Any, ...], Any] = {}  # patched attributes: the value lookup gave before the first patch


def patch_attr(owner: Any, name: str, value: Any, description: str = "") -> None:
    """owner.name = value; the original (own attribute, or inherited) comes back on undo."""
    key = ("attr", id(owner), name)
    if key not in _undo:
        own = vars(owner).get(name, _MISSING) if hasattr(owner, "__dict__") else getattr(owner, name, _MISSING)
        _originals[key] = getattr(owner, name)

        def undo() -> None:
            _originals.pop(key, None)
            if own is _MISSING:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
            else:
                setattr(owner, name, own)

        _undo[key] = (description or f"{getattr(owner, '__qualname__', owner)}.{name}", undo)
    setattr(owner, name, value)


def original(owner: Any, name: str) -> Any:
    """What owner.name was before any patch here (its current value when it is not patched)."""
    key = ("attr", id(owner), name)
    return _originals[key] if key in _originals else getattr(owner, name)


def set_env(name: str, value: str) -> None:
    key = ("env", name)
    if key not in _undo:
        before = os.environ.get(name)

        def undo() -> None:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

        _undo[key] = (f"${name}", undo)
    os.environ[name] = value


def set_item(mapping: MutableMapping[Any, Any], item: Any, value: Any, description: str = "") -> None:
    key = ("item", id(mapping), item)
    if key not in _undo:
        before = mapping.get(item, _MISSING)

        def undo() -> None:
            if before is _MISSING:
                mapping.pop(item, None)
            else:
                mapping[item] = before

        _undo[key] = (description or f"[{item!r}]", undo)
    mapping[item] = value


def installed() -> list[str]:
    return [description for description, _ in _undo.values()]


def undo_all() -> None:
    """Restore every original, newest patch first. Safe to call more than once."""
    while _undo:
        key = next(reversed(_undo))
        _, undo = _undo.pop(key)
        undo()


# ------------------------------------------------------------------ the patches


def requests_http(timeout: tuple[float, float], make_retry: Callable[[], Any]) -> None:
    """Timeouts and a retry policy for every requests call in the process, libraries' own included."""
    import requests
    from requests.adapters import HTTPAdapter

    session_init = original(requests.Session, "__init__")
    session_send = original(requests.Session, "send")
    adapter_init = original(HTTPAdapter, "__init__")

    def init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        session_init(self, *args, **kwargs)
        adapter = HTTPAdapter(max_retries=make_retry())
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN202 - every request ends here
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout
        return session_send(self, request, **kwargs)

    def adapter_with_retry(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        if isinstance(kwargs.get("max_retries"), int):  # e.g. HTTPAdapter(max_retries=3): counts, no policy
            kwargs["max_retries"] = make_retry()
        adapter_init(self, *args, **kwargs)

    patch_attr(requests.Session, "__init__", init, "requests.Session.__init__ (retry adapter)")
    patch_attr(requests.Session, "send", send, "requests.Session.send (default timeout)")
    patch_attr(HTTPAdapter, "__init__", adapter_with_retry, "requests.adapters.HTTPAdapter.__init__ (retry policy)")


def gdal_http(options: dict[str, str]) -> None:
    """GDAL reads these when it opens a /vsicurl/ file, so setting the environment is enough."""
    for name, value in options.items():
        set_env(name, value)


def fsspec_http_timeout(timeout: Any) -> None:
    """fsspec's http(s) filesystems pass ``client_kwargs`` to aiohttp: give them a timeout."""
    try:
        import fsspec.config
    except ImportError:
        return
    for protocol in ("http", "https"):
        conf = dict(fsspec.config.conf.get(protocol, {}))
        conf["client_kwargs"] = {**conf.get("client_kwargs", {}), "timeout": timeout}
        set_item(fsspec.config.conf, protocol, conf, f"fsspec.config.conf[{protocol!r}] (timeout)")


def sentinel_aws_endpoint(url: str) -> None:
    """Every Sentinel_AWS Terrakit creates (its pipeline included) searches url instead of Earth Search."""
    from terrakit.download.data_connectors.sentinel_aws import Sentinel_AWS

    init_original = original(Sentinel_AWS, "__init__")

    def init(self) -> None:  # noqa: ANN001
        init_original(self)
        self.stac_url = url

    patch_attr(Sentinel_AWS, "__init__", init, "terrakit Sentinel_AWS.__init__ (endpoint)")


def ibm_stac_endpoint(url: str) -> None:
    set_env("IBMRESEARCH_STAC_URL", url.rstrip("/"))
