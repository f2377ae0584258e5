"""The connector layer's pure rules, each in well under a second: failure classification (real exception
instances of each library), the retry rule at both layers, and the patches of third-party code."""

from __future__ import annotations

import errno
import http.server
import importlib.util
import json
import os
import socket
import threading
from pathlib import Path

import pytest
import requests
import urllib3.exceptions as u3

from geostudio_plugin.engine import patches
from geostudio_plugin.engine.connectors import failures, network
from geostudio_plugin.engine.connectors.failures import classify, stack_of
from geostudio_plugin.engine.connectors.network import STEP, TRANSPORT, Policy, retried_by_step, retry_layer

URL = "http://127.0.0.1:9/collections"


@pytest.fixture(autouse=True)
def no_patches_left():
    yield
    patches.undo_all()


def terrakit_exceptions():
    """Terrakit's exception module without importing the package (which takes seconds and reconfigures logging)."""
    spec = importlib.util.find_spec("terrakit")
    path = Path(spec.submodule_search_locations[0]) / "general_utils" / "exceptions.py"
    module_spec = importlib.util.spec_from_file_location("terrakit.general_utils.exceptions", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def raised(outer: BaseException, inner: BaseException) -> BaseException:
    """outer raised while handling inner, as libraries chain them."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer from inner
    except BaseException as exc:  # noqa: BLE001
        return exc


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} Error", response=response)


def aiohttp_errors():
    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    return {
        "timeout": aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
        "refused": aiohttp.ClientConnectorError(key, ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")),
        "server": aiohttp.ClientResponseError(None, (), status=503, message="Service Unavailable"),
        "truncated": aiohttp.ClientPayloadError("Response payload is not completed"),
        "disconnected": aiohttp.ServerDisconnectedError(),
    }


# --------------------------------------------------------------- classification


def test_requests_and_urllib3_exceptions_by_type():
    refused = u3.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    cases = [
        (requests.exceptions.ConnectTimeout("x"), "timeout"),
        (requests.exceptions.ReadTimeout("x"), "timeout"),
        (requests.exceptions.ChunkedEncodingError("x"), "truncated"),
        (requests.exceptions.ContentDecodingError("x"), "truncated"),
        (requests.exceptions.JSONDecodeError("Expecting value", "", 0), "truncated"),
        (requests.ConnectionError(u3.MaxRetryError(None, URL, refused)), "refused"),
        (requests.ConnectionError(u3.MaxRetryError(None, URL, u3.NameResolutionError("nowhere", None, socket.gaierror(
            -2, "Name or service not known")))), "refused"),
        (requests.exceptions.RetryError(u3.MaxRetryError(None, URL, u3.ResponseError("too many 503 error responses"))),
         "server"),
        # a body that stalls after the headers: requests reports a ConnectionError, not a Timeout
        (requests.ConnectionError(u3.ReadTimeoutError(None, URL, "Read timed out.")), "truncated"),
        (http_error(503), "server"), (http_error(429), "server"),
        (u3.ConnectTimeoutError("x"), "timeout"), (u3.ReadTimeoutError(None, URL, "x"), "timeout"),
        (refused, "refused"),  # a subclass of ConnectTimeoutError, yet refused
        (u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")), "truncated"),
        (u3.IncompleteRead(10, 90), "truncated"),
        (u3.MaxRetryError(None, URL, u3.ResponseError("too many 500 error responses")), "server"),
    ]
    for exc, kind in cases:
        assert classify(exc) == kind, repr(exc)
        assert stack_of(exc) == "requests"


def test_aiohttp_exceptions_by_type():
    errors = aiohttp_errors()
    assert {name: classify(exc) for name, exc in errors.items()} == {
        "timeout": "timeout", "refused": "refused", "server": "server", "truncated": "truncated",
        "disconnected": "truncated"}
    assert {stack_of(exc) for exc in errors.values()} == {"aiohttp"}
    wrapped = raised(OSError("Unable to synchronously open file"), errors["server"])  # h5py around fsspec
    assert classify(wrapped) == "server" and stack_of(wrapped) == "aiohttp"


def test_rasterio_errors_carry_gdal_text():
    from rasterio._err import CPLE_HttpResponseError, CPLE_OpenFailedError
    from rasterio.errors import RasterioIOError

    assert classify(RasterioIOError("HTTP response code: 500")) == "server"
    assert classify(CPLE_HttpResponseError(1, 11, "HTTP response code: 503")) == "server"
    assert classify(RasterioIOError("CURL error: Operation timed out after 2001 milliseconds")) == "timeout"
    assert classify(CPLE_OpenFailedError(1, 4, "'/vsicurl/http://h/a.tif' not recognized as being in a "
                                               "supported file format.")) == "truncated"
    assert classify(RasterioIOError("Read or write failed. IReadBlock failed at X offset 0")) == "truncated"
    assert classify(RasterioIOError("an unknown GDAL complaint")) == "truncated"  # the type's own default
    stackstac = raised(RuntimeError("Error reading Window(col_off=0, ...)"),
                       RasterioIOError("CURL error: Couldn't connect to server"))
    assert classify(stackstac) == "refused" and stack_of(stackstac) == "gdal"


def test_standard_library_errors_by_type_and_errno():
    cases = [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
        (OSError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "refused"),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), "timeout"),
        (socket.gaierror(-2, "Name or service not known"), "refused"),
        (socket.timeout("timed out"), "timeout"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "truncated"),
        (json.JSONDecodeError("Expecting value", "", 0), "truncated"),
        (__import__("http.client").client.IncompleteRead(b"abc", 10), "truncated"),
        (__import__("http.client").client.RemoteDisconnected("Remote end closed connection"), "truncated"),
    ]
    for exc, kind in cases:
        assert classify(exc) == kind, repr(exc)


def test_terrakit_and_input_errors():
    terrakit = terrakit_exceptions()
    assert classify(terrakit.TerrakitNoDataFoundError("nothing")) == "nodata"
    assert classify(terrakit.TerrakitValidationError("bad bbox")) == "invalid"
    assert classify(terrakit.TerrakitValueError("bad date")) == "invalid"
    assert classify(ValueError("bbox must be a list")) == "invalid"
    assert classify(AssertionError("out_bounds=None")) == "invalid"
    assert classify(KeyError("x")) == "other"
    # a network failure inside a generic error is the network failure
    assert classify(raised(ValueError("could not read"), ConnectionRefusedError(errno.ECONNREFUSED, "x"))) == "refused"


def test_several_kinds_in_one_chain_rank_nodata_server_timeout():
    from pystac_client.exceptions import APIError

    api = APIError("Service Unavailable")
    api.status_code = 503
    assert classify(raised(api, requests.exceptions.ReadTimeout("x"))) == "server"
    terrakit = terrakit_exceptions()
    assert classify(raised(terrakit.TerrakitNoDataFoundError("none"), http_error(500))) == "nodata"
    assert classify(raised(requests.exceptions.ReadTimeout("x"), ConnectionRefusedError())) == "timeout"


# Text fallback: messages as libraries write them, inside exceptions whose type says nothing.
TEXT_CASES = [
    ("No items found for the query", "nodata"),
    ("there is no data for these dates", "nodata"),
    ("HTTP response code: 502", "server"),
    ("Request failed with status code 503", "server"),
    ("503 Server Error: Service Unavailable for url: http://h/search", "server"),
    ("Max retries exceeded with url: /search (Caused by ResponseError('too many 500 error responses'))", "server"),
    ("Operation timed out after 2000 milliseconds with 0 bytes received", "timeout"),
    ("Timeout was reached", "timeout"),
    ("Operation too slow. Less than 1 bytes/sec transferred the last 2 seconds", "timeout"),
    ("[Errno 111] Connection refused", "refused"),
    ("Couldn't connect to server", "refused"),
    ("Failed to establish a new connection", "refused"),
    ("Could not resolve host: stac.example", "refused"),
    ("transfer closed with 100 bytes remaining to read", "truncated"),
    ("TIFFReadEncodedTile: data truncated", "truncated"),
    ("'x.tif' not recognized as being in a supported file format.", "truncated"),
    ("IReadBlock failed at X offset 0, Y offset 0: TIFFReadEncodedTile() failed.", "truncated"),
    ("read error at scanline 3", "truncated"),
    ("('Connection broken: IncompleteRead(0 bytes read)')", "truncated"),
    ("Expecting value: line 1 column 1 (char 0)", "truncated"),
    ("an unrelated failure", None),
]


@pytest.mark.parametrize("message, kind", TEXT_CASES)
def test_text_fallback(message, kind):
    assert failures.kind_by_text(message) == kind
    assert classify(RuntimeError(message)) == (kind or "other")


def test_every_text_pattern_has_a_case():
    for kind, pattern in failures.TEXT_KINDS:
        assert any(pattern.search(m.lower()) and k == kind for m, k in TEXT_CASES), pattern.pattern


def test_type_wins_over_text():
    assert classify(requests.exceptions.ReadTimeout("Connection refused?")) == "timeout"
    assert classify(ConnectionRefusedError(errno.ECONNREFUSED, "HTTP response code: 500")) == "refused"


# ------------------------------------------------------------------- retry rule


def test_each_failure_is_retried_at_one_layer():
    assert retry_layer("timeout", "requests") == TRANSPORT and retry_layer("timeout", "aiohttp") == STEP
    assert retry_layer("server", "gdal") == TRANSPORT and retry_layer("server", "aiohttp") == STEP
    assert retry_layer("refused", "requests") == TRANSPORT and retry_layer("refused", "gdal") == STEP
    assert {retry_layer("truncated", s) for s in ("requests", "gdal", "aiohttp")} == {STEP}
    for kind in ("nodata", "invalid", "other"):
        assert {retry_layer(kind, s) for s in ("requests", "gdal", "aiohttp")} == {None}
    assert set(network.RETRY_RULE) | {"nodata", "invalid", "other"} == set(failures.KINDS)


def test_the_step_retries_only_what_no_layer_below_did():
    from rasterio.errors import RasterioIOError

    errors = aiohttp_errors()
    assert not retried_by_step(requests.exceptions.ReadTimeout("x"))  # urllib3 retried it
    assert not retried_by_step(requests.exceptions.RetryError("too many 500 error responses"))
    assert retried_by_step(requests.exceptions.ChunkedEncodingError("x"))
    assert not retried_by_step(RasterioIOError("HTTP response code: 500"))  # GDAL retried it
    assert not retried_by_step(RasterioIOError("CURL error: Operation timed out"))
    assert retried_by_step(RasterioIOError("CURL error: Couldn't connect to server"))
    assert retried_by_step(errors["timeout"]) and retried_by_step(errors["server"])
    assert not retried_by_step(ValueError("bad bbox")) and not retried_by_step(terrakit_exceptions().
                                                                              TerrakitNoDataFoundError("none"))


def test_with_retries_counts_attempts():
    policy = Policy(timeout_s=1, retries=2, backoff_s=0)
    calls = []

    def broken(exc):
        def action():
            calls.append(1)
            raise exc
        return action

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        network.with_retries(broken(requests.exceptions.ChunkedEncodingError("x")), policy)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(requests.exceptions.ReadTimeout):
        network.with_retries(broken(requests.exceptions.ReadTimeout("x")), policy)
    assert len(calls) == 1
    retries = []
    calls.clear()
    flaky = iter([requests.exceptions.ChunkedEncodingError("x")])

    def once_broken():
        calls.append(1)
        error = next(flaky, None)
        if error:
            raise error
        return "ok"

    assert network.with_retries(once_broken, policy, lambda n, e: retries.append(n)) == "ok" and retries == [1]


def test_urllib3_retry_consults_the_rule():
    retry = network.make_retry(Policy(timeout_s=1, retries=2, backoff_s=0))
    assert retry.is_retry("POST", 503) and retry.is_retry("GET", 429) and not retry.is_retry("GET", 404)
    again = retry.increment("GET", URL, error=u3.NewConnectionError(None, "refused"))
    again = again.increment("GET", URL, error=u3.ReadTimeoutError(None, URL, "Read timed out."))
    with pytest.raises(u3.MaxRetryError):  # two retries used up
        again.increment("GET", URL, error=u3.ConnectTimeoutError("x"))
    with pytest.raises(u3.MaxRetryError) as raised_error:  # not the transport's to retry: no second try
        retry.increment("GET", URL, error=u3.ProtocolError("Connection aborted.", ConnectionResetError()))
    assert isinstance(raised_error.value.reason, u3.ProtocolError)


class _Server:
    """A loopback HTTP server: ``mode`` '500' answers 500; 'truncate' promises 100 bytes and sends 4."""

    def __init__(self, mode: str) -> None:
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.hits += 1
                self.send_response(500 if mode == "500" else 200)
                self.send_header("Content-Length", "4" if mode == "500" else "100")
                self.end_headers()
                self.wfile.write(b"{}{}")
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/x"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_installed_policy_retries_a_5xx_in_the_transport_and_a_cut_body_in_the_step():
    policy = network.install(Policy(timeout_s=2, retries=2, backoff_s=0))
    server = _Server("500")
    try:
        assert network.with_retries(lambda: requests.get(server.url).status_code, policy) == 500
        assert server.hits == 3  # the first try and two retries, all by urllib3
    finally:
        server.close()
    server = _Server("truncate")
    try:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            network.with_retries(lambda: requests.get(server.url).content, policy)
        assert server.hits == 3  # urllib3 cannot retry a body: the step did
    finally:
        server.close()


def test_gdal_retries_the_statuses_the_rule_gives_it():
    options = network.gdal_options(Policy(timeout_s=5, retries=3, backoff_s=0.25))
    assert options["GDAL_HTTP_RETRY_CODES"] == "429,500,502,503,504"
    assert options["GDAL_HTTP_MAX_RETRY"] == "3" and options["GDAL_HTTP_TIMEOUT"] == "5"


# ---------------------------------------------------------------------- patches


def test_undo_all_restores_every_original():
    import fsspec.config
    from requests.adapters import HTTPAdapter

    originals = (requests.Session.__init__, requests.Session.send, HTTPAdapter.__init__)
    env_before = {k: os.environ.get(k) for k in network.gdal_options(Policy())}
    fsspec_before = json.dumps({k: repr(v) for k, v in fsspec.config.conf.items()}, sort_keys=True)
    network.install(Policy(timeout_s=3, retries=1))
    network.install(Policy(timeout_s=4, retries=2))  # again: replaces, never stacks
    assert requests.Session.send is not originals[1]
    assert os.environ["GDAL_HTTP_TIMEOUT"] == "4" and fsspec.config.conf["https"]["client_kwargs"]["timeout"]
    assert "requests.Session.send (default timeout)" in patches.installed()
    patches.undo_all()
    assert (requests.Session.__init__, requests.Session.send, HTTPAdapter.__init__) == originals
    assert {k: os.environ.get(k) for k in env_before} == env_before
    assert json.dumps({k: repr(v) for k, v in fsspec.config.conf.items()}, sort_keys=True) == fsspec_before
    assert patches.installed() == []
    patches.undo_all()  # twice is harmless


def test_patch_primitives_restore_inherited_attributes_missing_variables_and_items():
    class Base:
        def hello(self) -> str:
            return "base"

    class Child(Base):
        pass

    patches.patch_attr(Child, "hello", lambda self: "first")
    patches.patch_attr(Child, "hello", lambda self: "second")
    assert Child().hello() == "second" and patches.original(Child, "hello") is Base.hello
    os.environ.pop("GEOSTUDIO_TEST_PATCH", None)
    patches.set_env("GEOSTUDIO_TEST_PATCH", "1")
    config = {"keep": 1}
    patches.set_item(config, "new", 2)
    patches.set_item(config, "keep", 3)
    patches.undo_all()
    assert "hello" not in vars(Child) and Child().hello() == "base"
    assert "GEOSTUDIO_TEST_PATCH" not in os.environ
    assert config == {"keep": 1}
