"""Timeouts and bounded retries for every HTTP call the connectors make.

Terrakit sets no timeout anywhere, and its HTTP goes through three stacks: requests (pystac-client,
Terrakit's REST helpers, sentinelhub-py), GDAL's /vsicurl/ (stackstac reading COGs) and fsspec/aiohttp
(NetCDF over http). ``install`` puts a timeout and a retry policy on all three for this process, so it
also covers the connectors Terrakit's own pipeline code creates.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

RETRY_STATUS = (500, 502, 503, 504)


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 30.0
    retries: int = 2  # attempts after the first
    backoff_s: float = 0.5

    @classmethod
    def from_env(cls) -> "Policy":
        def number(name: str, default: float, kind: type) -> float:
            try:
                return max(0, kind(os.environ.get(name, default)))
            except ValueError:
                return default  # a malformed override must not stop the job

        return cls(timeout_s=number("GEOSTUDIO_HTTP_TIMEOUT", 30.0, float) or 30.0,
                   retries=int(number("GEOSTUDIO_HTTP_RETRIES", 2, int)),
                   backoff_s=number("GEOSTUDIO_HTTP_BACKOFF", 0.5, float))

    def worst_case_s(self) -> float:
        return (self.retries + 1) * self.timeout_s + sum(self.backoff_s * 2 ** i for i in range(self.retries))


_installed: Policy | None = None


def install(policy: Policy | None = None) -> Policy:
    global _installed
    policy = policy or Policy.from_env()
    if _installed == policy:
        return policy
    _install_requests(policy)
    _install_gdal(policy)
    _install_fsspec(policy)
    _installed = policy
    return policy


def _install_requests(policy: Policy) -> None:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session_class = requests.Session
    original_init = getattr(session_class, "_geostudio_original_init", session_class.__init__)
    original_send = getattr(session_class, "_geostudio_original_send", session_class.send)

    def init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        original_init(self, *args, **kwargs)
        retry = Retry(total=policy.retries, connect=policy.retries, read=policy.retries, status=policy.retries,
                      backoff_factor=policy.backoff_s, status_forcelist=RETRY_STATUS, allowed_methods=None,
                      raise_on_status=False, respect_retry_after_header=False)
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN202 - every request ends here
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (min(policy.timeout_s, 10.0), policy.timeout_s)
        return original_send(self, request, **kwargs)

    session_class._geostudio_original_init = original_init
    session_class._geostudio_original_send = original_send
    session_class.__init__ = init
    session_class.send = send
    # Libraries that mount their own adapter afterwards (pystac-client, Terrakit's REST helpers) keep
    # the timeout above; give their HTTPAdapter(max_retries=3) a real policy too.
    adapter_init = getattr(HTTPAdapter, "_geostudio_original_init", HTTPAdapter.__init__)

    def adapter_with_retry(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        if isinstance(kwargs.get("max_retries"), int):
            kwargs["max_retries"] = Retry(total=policy.retries, backoff_factor=policy.backoff_s,
                                          status_forcelist=RETRY_STATUS, allowed_methods=None,
                                          raise_on_status=False)
        adapter_init(self, *args, **kwargs)

    HTTPAdapter._geostudio_original_init = adapter_init
    HTTPAdapter.__init__ = adapter_with_retry


def _install_gdal(policy: Policy) -> None:
    """GDAL reads the environment when it opens a /vsicurl/ file, so setting it here is enough."""
    os.environ.update({
        "GDAL_HTTP_TIMEOUT": str(int(max(1, policy.timeout_s))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, min(policy.timeout_s, 10)))),
        "GDAL_HTTP_MAX_RETRY": str(policy.retries),
        "GDAL_HTTP_RETRY_DELAY": str(policy.backoff_s),
        "GDAL_HTTP_RETRY_CODES": ",".join(map(str, (*RETRY_STATUS, 429))),
        # a server that trickles bytes: give up when under 1 byte/s for the timeout
        "GDAL_HTTP_LOW_SPEED_TIME": str(int(max(1, policy.timeout_s))),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_USE_HEAD": "YES",
    })


def _install_fsspec(policy: Policy) -> None:
    try:
        import aiohttp
        import fsspec.config
    except ImportError:
        return
    timeout = aiohttp.ClientTimeout(total=None, connect=min(policy.timeout_s, 10), sock_read=policy.timeout_s)
    for protocol in ("http", "https"):
        conf = fsspec.config.conf.setdefault(protocol, {})
        conf.setdefault("client_kwargs", {})["timeout"] = timeout


def with_retries(action: Callable[[], T], transient: Callable[[BaseException], bool], policy: Policy,
                 on_retry: Callable[[int, BaseException], None] = lambda n, e: None) -> T:
    """Run action; on a transient failure wait (exponential backoff) and try again, a bounded number of times."""
    for attempt in range(policy.retries + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified by transient()
            if attempt >= policy.retries or not transient(exc):
                raise
            on_retry(attempt + 1, exc)
            time.sleep(policy.backoff_s * 2 ** attempt)
    raise AssertionError("unreachable")
