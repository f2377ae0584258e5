"""Timeouts and one retry rule for every HTTP call the connectors make.

Terrakit sets no timeout anywhere, and its HTTP goes through three stacks: requests (pystac-client,
Terrakit's REST helpers, sentinelhub-py), GDAL's /vsicurl/ (stackstac reading COGs) and fsspec/aiohttp
(NetCDF over http). ``install`` puts a timeout and the retry rule on all three for this process (through
``engine.patches``), so it also covers the connectors Terrakit's own pipeline code creates.

The retry rule
--------------
Two layers can retry: the **transport** (one HTTP request again: urllib3's ``Retry`` inside requests,
GDAL's own HTTP retry) and the **step** (``with_retries``: a whole search or per-date fetch again). A
failure is retried at most ``Policy.retries`` times, and at one layer only: the lowest that can retry it.
``retry_layer(kind, stack)`` is that rule; the failure kinds are ``failures.classify``'s.

=========  =====================================  =====================  ==========================
kind       requests (urllib3)                     GDAL /vsicurl/         aiohttp (fsspec)
=========  =====================================  =====================  ==========================
timeout    transport (connect and read timeouts)  transport (curl's)     step (aiohttp cannot)
server     transport (5xx, 429)                   transport (5xx, 429)   step
refused    transport (connect retries)            step (GDAL does not)   step
truncated  step (the body comes after urllib3)    step                   step
nodata, invalid, other: never retried (another try gives the same answer)
=========  =====================================  =====================  ==========================

Both layers consult it: urllib3 through ``RuleRetry`` (its ``is_retry`` for status codes, its
``increment`` for errors), GDAL through ``GDAL_HTTP_RETRY_CODES`` built from the table (GDAL retries
its curl timeouts by itself), and ``with_retries``' default test ``retried_by_step``. So a timeout is
waited for at most (retries + 1) x timeout, never multiplied by a second layer.

Settings: GEOSTUDIO_HTTP_TIMEOUT (s, default 30), GEOSTUDIO_HTTP_RETRIES (default 2),
GEOSTUDIO_HTTP_BACKOFF (s, default 0.5; the wait doubles with each retry).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional, TypeVar

from .. import patches
from .failures import classify, stack_of

T = TypeVar("T")

TRANSPORT, STEP = "transport", "step"
RETRY_STATUS = (429, 500, 502, 503, 504)  # the statuses the transport layer may see again ("server")

# kind -> the lowest layer that retries it, per HTTP stack (see the table above)
RETRY_RULE: dict[str, dict[str, Optional[str]]] = {
    "timeout": {"requests": TRANSPORT, "gdal": TRANSPORT, "aiohttp": STEP},
    "server": {"requests": TRANSPORT, "gdal": TRANSPORT, "aiohttp": STEP},
    "refused": {"requests": TRANSPORT, "gdal": STEP, "aiohttp": STEP},
    "truncated": {"requests": STEP, "gdal": STEP, "aiohttp": STEP},
}


def retry_layer(kind: str, stack: str = "requests") -> Optional[str]:
    """Where a failure of this kind from this HTTP stack is retried: TRANSPORT, STEP or None (never)."""
    return RETRY_RULE.get(kind, {}).get(stack)


def retried_by_step(exc: BaseException) -> bool:
    """Run the whole step again? Only for failures no layer below retries."""
    return retry_layer(classify(exc), stack_of(exc)) == STEP


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 30.0
    retries: int = 2  # attempts after the first, at the one layer that retries a failure
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

    @property
    def connect_timeout_s(self) -> float:
        return min(self.timeout_s, 10.0)


@lru_cache(maxsize=1)
def rule_retry_class() -> type:
    """urllib3's Retry, asking RETRY_RULE (stack "requests") before each retry."""
    from urllib3.util.retry import Retry

    from .failures import kind_by_type

    class RuleRetry(Retry):
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            kind = "server" if status_code in RETRY_STATUS else None
            return self._is_method_retryable(method) and retry_layer(kind, "requests") == TRANSPORT

        def increment(self, method=None, url=None, response=None, error=None, _pool=None,  # noqa: ANN001
                      _stacktrace=None) -> "RuleRetry":
            if error is not None and retry_layer(kind_by_type(error) or "other", "requests") != TRANSPORT:
                # not ours to retry: fail the way an exhausted Retry does (MaxRetryError from the error)
                return Retry.increment(self.new(total=0), method, url, response, error, _pool, _stacktrace)
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return RuleRetry


def make_retry(policy: Policy) -> Any:
    return rule_retry_class()(total=policy.retries, connect=policy.retries, read=policy.retries,
                              status=policy.retries, other=policy.retries, backoff_factor=policy.backoff_s,
                              status_forcelist=RETRY_STATUS, allowed_methods=None, raise_on_status=False,
                              respect_retry_after_header=False)


def gdal_options(policy: Policy) -> dict[str, str]:
    codes = [str(s) for s in RETRY_STATUS if retry_layer("server", "gdal") == TRANSPORT]
    return {
        "GDAL_HTTP_TIMEOUT": str(int(max(1, policy.timeout_s))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, policy.connect_timeout_s))),
        "GDAL_HTTP_MAX_RETRY": str(policy.retries),
        "GDAL_HTTP_RETRY_DELAY": str(policy.backoff_s),
        "GDAL_HTTP_RETRY_CODES": ",".join(codes),
        # a server that trickles bytes: give up when under 1 byte/s for the timeout
        "GDAL_HTTP_LOW_SPEED_TIME": str(int(max(1, policy.timeout_s))),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_USE_HEAD": "YES",
    }


def install(policy: Optional[Policy] = None) -> Policy:
    """Timeouts and the retry rule on requests, GDAL and fsspec for this process (undone by patches.undo_all).

    Installing again (another policy) replaces the patches; it never stacks them."""
    policy = policy or Policy.from_env()
    patches.requests_http((policy.connect_timeout_s, policy.timeout_s), lambda: make_retry(policy))
    patches.gdal_http(gdal_options(policy))
    try:
        import aiohttp
    except ImportError:
        return policy
    patches.fsspec_http_timeout(aiohttp.ClientTimeout(total=None, connect=policy.connect_timeout_s,
                                                      sock_read=policy.timeout_s))
    return policy


def with_retries(action: Callable[[], T], policy: Policy,
                 on_retry: Callable[[int, BaseException], None] = lambda n, e: None,
                 retry: Callable[[BaseException], bool] = retried_by_step) -> T:
    """Run action; when ``retry`` says so (by default: the rule sends this failure to the step layer),
    wait (exponential backoff) and run it again, at most policy.retries times."""
    for attempt in range(policy.retries + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - decided by retry()
            if attempt >= policy.retries or not retry(exc):
                raise
            on_retry(attempt + 1, exc)
            time.sleep(policy.backoff_s * 2 ** attempt)
            forget_cached_responses()
    raise AssertionError("unreachable")


def forget_cached_responses() -> None:
    """Drop GDAL's /vsicurl/ cache before a step retry: it keeps the blocks (and the truncation) of the
    failed try across a reopen, so without this the retry would never reach the server again."""
    try:
        import rasterio.cache
    except ImportError:
        return
    rasterio.cache.invalidate_all()
