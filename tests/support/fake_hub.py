"""A loopback HTTP server laid out like the Hugging Face hub, reached through HF_ENDPOINT: the engine's weights
tests (tests/engine/test_weights.py) and the Fine-tuning dock's Download test use it, so nothing is downloaded from
the internet. Standard library only (it runs under the engine's Python and under QGIS's)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """``/{repo_id}/resolve/{revision}/{filename}`` with the headers huggingface_hub reads, Range requests,
    an optional cut of the first body half way, and an optional delay per 64 KB."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.files = files
        self.cut_first_get = False
        self.delay_s = 0.0
        self.requests: list[tuple[str, str, Optional[str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: Any) -> None:
        return None

    def _file(self) -> Optional[bytes]:
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/[^/]+/(?P<name>.+)", self.path.split("?")[0])
        return self.server.files.get(f"{match['repo']}/{match['name']}") if match else None

    def _headers(self, body: bytes, status: int, start: int) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        body = self._file()
        self.server.requests.append(("HEAD", self.path, None))
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._headers(body, 200, 0)

    def do_GET(self) -> None:  # noqa: N802
        body = self._file()
        wanted = self.headers.get("Range")
        self.server.requests.append(("GET", self.path, wanted))
        if body is None:
            self.send_error(404)
            return
        start = int(re.match(r"bytes=(\d+)-", wanted).group(1)) if wanted else 0
        self._headers(body, 206 if start else 200, start)
        end = len(body)
        if self.server.cut_first_get:
            self.server.cut_first_get = False
            end = start + (len(body) - start) // 2
        for offset in range(start, end, 65536):
            try:
                self.wfile.write(body[offset:min(offset + 65536, end)])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            if self.server.delay_s:
                time.sleep(self.server.delay_s)
        if end < len(body):  # the cut: close with the body short of its Content-Length
            self.close_connection = True
            self.connection.shutdown(2)


def serve(files: dict[str, bytes]) -> FakeHub:
    """A started hub serving ``files`` ({"<repo_id>/<filename>": bytes}); stop it with ``stop``."""
    server = FakeHub(files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: FakeHub) -> None:
    server.shutdown()
    server.server_close()
