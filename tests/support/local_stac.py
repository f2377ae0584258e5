"""A real STAC API (rustac) and a Range-capable file server on 127.0.0.1, with fault proxies in front.

Standard library only, so both test suites (QGIS Python and engine Python) use it. The catalogue is
built from the bundled MARIDA patches by stac_data.py, run with the engine's Python.

    with LocalStac(engine_python, tmp_dir) as stac:
        stac.stac_url      # STAC API, through a proxy whose fault mode tests can switch
        stac.stac_proxy.mode = "500"      # "pass", "500", "truncate", "slow"
        stac.asset_proxy.mode = "truncate"

Asset hrefs point at the asset proxy, and the STAC proxy rewrites rustac's own links to itself, so
every request of a search or a fetch crosses a proxy.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: Optional[subprocess.Popen] = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


class FaultProxy:
    """Forwards to an upstream server; ``mode`` injects a fault into every response while set."""

    def __init__(self, upstream_port: int, slow_seconds: float = 30.0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.mode = "pass"
        self.slow_seconds = slow_seconds
        self.requests: list[str] = []
        self.asked: list[tuple[str, str, str]] = []  # (method, path, Range header): a retry asks the same again
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                proxy.asked.append((self.command, self.path, self.headers.get("Range", "")))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if proxy.mode == "slow":
                    time.sleep(proxy.slow_seconds)
                if proxy.mode == "500":
                    payload = b'{"code": "InternalServerError", "description": "injected fault"}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                mine, theirs = f"127.0.0.1:{proxy.port}".encode(), f"127.0.0.1:{proxy.upstream_port}".encode()
                if theirs in data:
                    data = data.replace(theirs, mine)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                if self.command == "HEAD":  # no body: keep the upstream's length (GDAL reads the size from it)
                    self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if proxy.mode == "truncate" and len(data) > 16:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalStac:
    def __init__(self, engine_python: Path, root: Path) -> None:
        self.python = Path(engine_python)
        self.root = Path(root)
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []  # the servers' log files
        self.truth: dict = {}

    def _spawn(self, cmd: list[str], cwd: Path, log_name: str) -> subprocess.Popen:
        log = open(self.root / log_name, "wb")  # noqa: SIM115 - closed in __exit__, with the process
        self.logs.append(log)
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> "LocalStac":
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "assets").mkdir(exist_ok=True)
        asset_port = free_port()
        asset_server = self._spawn([str(self.python), "-m", "RangeHTTPServer", "--bind", "127.0.0.1",
                                    str(asset_port)], self.root / "assets", "assets.log")
        self.asset_proxy = FaultProxy(asset_port).start()
        subprocess.run([str(self.python), str(HERE / "stac_data.py"), str(self.root), self.asset_proxy.url],
                       check=True, capture_output=True)
        self.truth = json.loads((self.root / "truth.json").read_text())
        wait_http(f"http://127.0.0.1:{asset_port}/", asset_server)
        rustac = self.python.parent / "rustac"
        files = [str(self.root / "stac" / name) for name in
                 ("sentinel-2-l2a.json", "sentinel-2-l2a.ndjson", "marida-ndvi.json", "marida-ndvi.ndjson")]
        for _attempt in range(3):
            stac_port = free_port()
            server = self._spawn([str(rustac), "serve", "--addr", f"127.0.0.1:{stac_port}", *files],
                                 self.root, "rustac.log")
            try:
                wait_http(f"http://127.0.0.1:{stac_port}/", server)
                break
            except (RuntimeError, TimeoutError):
                continue
        else:
            raise RuntimeError("rustac serve did not start; see " + str(self.root / "rustac.log"))
        self.stac_proxy = FaultProxy(stac_port).start()
        self.direct_stac_url = f"http://127.0.0.1:{stac_port}/"
        return self

    @property
    def stac_url(self) -> str:
        return self.stac_proxy.url + "/"

    def items(self, collection: str) -> list[dict]:
        return [json.loads(line) for line in (self.root / "stac" / f"{collection}.ndjson").read_text().splitlines()]

    def __exit__(self, *exc) -> None:
        for proxy in (getattr(self, "stac_proxy", None), getattr(self, "asset_proxy", None)):
            if proxy is not None:
                proxy.stop()
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
