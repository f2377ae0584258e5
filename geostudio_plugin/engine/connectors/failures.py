"""What kind of failure an exception is, and which HTTP stack raised it.

Kinds: ``nodata`` (the service has nothing for the query), ``server`` (HTTP 5xx or 429), ``timeout``
(no answer in time), ``refused`` (no connection: refused, unreachable, unknown host), ``truncated`` (an
answer began and then broke off or was unreadable), ``invalid`` (the request itself was refused as
wrong), ``other``. Each becomes the error code ``connector_<kind>`` (``no_data``, ``invalid_request``).

``classify`` looks at the exception and everything it wraps (``__cause__``, ``__context__``, urllib3's
``reason``, an exception passed as an argument, aiohttp's ``os_error``), in this order, the first that
decides wins:

1. The exception's type: ``TYPE_KINDS`` maps classes of Terrakit, requests, urllib3, aiohttp,
   http.client and the standard library to a kind (most specific class first, so urllib3's
   NewConnectionError is ``refused`` although it subclasses ConnectTimeoutError). Classes are
   matched by their dotted name over the MRO, so no library is imported to classify. An HTTP status
   on the exception or its response (``status_code``, ``response.status_code``, aiohttp's ``status``)
   of 5xx or 429 is ``server``; an ``OSError`` errno (ECONNREFUSED, ETIMEDOUT, …) decides too. When
   several exceptions in the chain decide, the kinds rank nodata > server > timeout > refused >
   truncated.
2. Text, only when no type decided: GDAL (``rasterio``'s errors) reports HTTP status and curl errors
   only in its message, and some libraries wrap a network error in a plain exception with the
   original's text. ``TEXT_KINDS`` lists the patterns, in the same rank order.
3. Types that only say "something was wrong": requests' bare ConnectionError is ``refused``; a
   rasterio/GDAL read or open error is ``truncated``; ValueError, AssertionError and Terrakit's
   validation errors are ``invalid`` (the network ones rank first). They come last because libraries
   raise them around network failures too.
4. Otherwise ``other``.

``stack_of`` names the HTTP library a failure came from (``requests``, ``gdal`` or ``aiohttp``):
the retry rule in ``network`` depends on which of them can retry by itself.
"""

from __future__ import annotations

import errno
import re
from typing import Iterator, Optional

KINDS = ("nodata", "server", "timeout", "refused", "truncated", "invalid", "other")
RANK = ("nodata", "server", "timeout", "refused", "truncated")  # when several exceptions decide

TYPE_KINDS = {
    # Terrakit
    "terrakit.general_utils.exceptions.TerrakitNoDataFoundError": "nodata",
    # requests (pystac-client, Terrakit's REST helpers, sentinelhub-py, cdsapi)
    "requests.exceptions.ConnectTimeout": "timeout",
    "requests.exceptions.ReadTimeout": "timeout",
    "requests.exceptions.ChunkedEncodingError": "truncated",
    "requests.exceptions.ContentDecodingError": "truncated",
    "requests.exceptions.RetryError": "server",  # urllib3 ran out of retries on a status code
    "json.decoder.JSONDecodeError": "truncated",  # also requests.exceptions.JSONDecodeError: a body cut short
    # urllib3
    "urllib3.exceptions.NewConnectionError": "refused",  # also NameResolutionError
    "urllib3.exceptions.ConnectTimeoutError": "timeout",
    "urllib3.exceptions.ReadTimeoutError": "timeout",
    "urllib3.exceptions.ResponseError": "server",  # "too many 500 error responses"
    "urllib3.exceptions.ProtocolError": "truncated",  # connection aborted, IncompleteRead, InvalidChunkLength
    "urllib3.exceptions.DecodeError": "truncated",
    # aiohttp (fsspec's http filesystem: NetCDF over http)
    "aiohttp.client_exceptions.ServerTimeoutError": "timeout",
    "aiohttp.client_exceptions.ClientConnectorError": "refused",
    "aiohttp.client_exceptions.ServerDisconnectedError": "truncated",
    "aiohttp.client_exceptions.ClientPayloadError": "truncated",
    "aiohttp.client_exceptions.ContentTypeError": "truncated",
    # standard library
    "http.client.IncompleteRead": "truncated",
    "http.client.RemoteDisconnected": "truncated",
    "socket.gaierror": "refused",
    "builtins.ConnectionRefusedError": "refused",
    "builtins.ConnectionResetError": "truncated",
    "builtins.ConnectionAbortedError": "truncated",
    "builtins.BrokenPipeError": "truncated",
    "builtins.TimeoutError": "timeout",  # socket.timeout, asyncio.TimeoutError
}

ERRNO_KINDS = {
    errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "refused", errno.ENETUNREACH: "refused",
    errno.EHOSTDOWN: "refused", errno.ETIMEDOUT: "timeout", errno.ECONNRESET: "truncated",
    errno.EPIPE: "truncated", errno.ECONNABORTED: "truncated",
}

# Fallback on the lower-cased messages of the chain; each pattern is tested in test_connector_units.py.
TEXT_KINDS: list[tuple[str, re.Pattern[str]]] = [(kind, re.compile(pattern)) for kind, pattern in [
    ("nodata", r"no items found"),
    ("nodata", r"\bno data\b"),
    ("server", r"http response code: (5\d\d|429)\b"),  # GDAL /vsicurl/
    ("server", r"\b(status|status code|response code|http error)\W{0,3}(5\d\d|429)\b"),
    ("server", r"\b(5\d\d|429) (server error|internal server error|bad gateway|service unavailable|"
               r"gateway time-?out|too many requests)"),
    ("server", r"too many (5\d\d|429) error responses"),  # urllib3 ResponseError
    ("timeout", r"timed out"),  # curl "Operation timed out", urllib3 "Read timed out"
    ("timeout", r"timeout was reached"),
    ("timeout", r"operation too slow"),  # curl's low-speed limit (GDAL_HTTP_LOW_SPEED_TIME)
    ("refused", r"connection refused"),
    ("refused", r"could(n't| not) connect"),
    ("refused", r"failed to establish a new connection"),
    ("refused", r"name or service not known|could not resolve host|temporary failure in name resolution"),
    ("truncated", r"transfer closed"),  # curl: body shorter than Content-Length
    ("truncated", r"truncated"),
    ("truncated", r"not recognized as being in a supported file format"),  # GDAL on a damaged download
    ("truncated", r"ireadblock failed"),  # GDAL reading a damaged tile
    ("truncated", r"read error"),
    ("truncated", r"connection reset|connection aborted|connection broken"),
    ("truncated", r"expecting value|unterminated string"),  # JSON cut short, as text
]]

WEAK_TYPE_KINDS = {
    "requests.exceptions.ConnectionError": "refused",
    "rasterio.errors.RasterioIOError": "truncated",
    "rasterio._err.CPLE_BaseError": "truncated",  # CPLE_HttpResponseError, CPLE_OpenFailedError, …
    "terrakit.general_utils.exceptions.TerrakitValidationError": "invalid",
    "terrakit.general_utils.exceptions.TerrakitValueError": "invalid",
    "pydantic_core._pydantic_core.ValidationError": "invalid",
    "builtins.ValueError": "invalid",
    "builtins.AssertionError": "invalid",
}

STACKS = {"aiohttp": "aiohttp", "fsspec": "aiohttp", "rasterio": "gdal", "stackstac": "gdal"}


def chain(exc: Optional[BaseException]) -> Iterator[BaseException]:
    """exc and every exception it wraps, outermost first, each once."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        yield current
        todo.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                     getattr(current, "os_error", None), getattr(current, "original_error", None),
                     *[a for a in current.args if isinstance(a, BaseException)]])


def _names(exc: BaseException) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    for value in (getattr(exc, "status_code", None), getattr(response, "status_code", None),
                  getattr(exc, "status", None) if "aiohttp" in type(exc).__module__ else None):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _stalled_body(exc: BaseException) -> list[BaseException]:
    """The read timeout inside requests' ConnectionError from its body iterator: the answer had begun, then
    stalled. urllib3 cannot retry that (its retries end when the headers arrive), so it is ``truncated``."""
    if _names(exc)[0] != "requests.exceptions.ConnectionError":
        return []
    return [a for a in exc.args if isinstance(a, BaseException) and
            "urllib3.exceptions.ReadTimeoutError" in _names(a)]


def kind_by_type(exc: BaseException) -> Optional[str]:
    """The kind this one exception's type, HTTP status or errno says, without its chain or text."""
    status = _status(exc)
    if status is not None and (status >= 500 or status == 429):
        return "server"
    if _stalled_body(exc):
        return "truncated"
    for name in _names(exc):
        if name in TYPE_KINDS:
            return TYPE_KINDS[name]
    if isinstance(exc, OSError) and exc.errno in ERRNO_KINDS:
        return ERRNO_KINDS[exc.errno]
    return None


def kind_by_text(text: str) -> Optional[str]:
    text = text.lower()
    return next((kind for kind, pattern in TEXT_KINDS if pattern.search(text)), None)


def classify(exc: BaseException) -> str:
    """One of KINDS; see the module docstring for the order of the rules."""
    exceptions = list(chain(exc))
    stalled = {id(inner) for e in exceptions for inner in _stalled_body(e)}
    decided = {kind_by_type(e) for e in exceptions if id(e) not in stalled}
    for kind in RANK:
        if kind in decided:
            return kind
    by_text = kind_by_text(" ".join(str(e) for e in exceptions))
    if by_text:
        return by_text
    weak = {next((WEAK_TYPE_KINDS[n] for n in _names(e) if n in WEAK_TYPE_KINDS), None) for e in exceptions}
    return next((kind for kind in (*RANK, "invalid") if kind in weak), "other")


def stack_of(exc: BaseException) -> str:
    """``aiohttp``, ``gdal`` or ``requests`` (the default: every other HTTP call goes through requests)."""
    for e in chain(exc):
        for cls in type(e).__mro__:
            stack = STACKS.get(cls.__module__.split(".")[0])
            if stack:
                return stack
    return "requests"
