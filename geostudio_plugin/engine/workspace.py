"""The workspace folder: where datasets, tuned models and inference runs are kept.

Every output is built in ``.tmp/`` and renamed into place only when complete,
so a failed or cancelled command never leaves something that looks finished.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .protocol import json_safe
from .wire import FAILED_DIR, KINDS, RECORDS  # noqa: F401 - KINDS, RECORDS re-exported


def slugify(text: str, max_len: int = 30) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", text.strip().lower()).strip("-.")
    return slug[:max_len].strip("-.") or "item"


def user_data_dir() -> Path:
    """The per-user data folder for GeoStudio, by platform convention."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "geostudio"


def default_workspace() -> Path:
    """$GEOSTUDIO_WORKSPACE, or ``workspace`` in the user data folder."""
    override = os.environ.get("GEOSTUDIO_WORKSPACE")
    return Path(override).expanduser() if override else user_data_dir() / "workspace"


HOST = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:20] or "host"
STALE_AFTER_S = 24 * 3600


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; rely on age instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def dir(self, kind: str) -> Path:
        assert kind in KINDS, kind
        return self.root / kind

    @property
    def tmp(self) -> Path:
        return self.root / ".tmp"

    @property
    def catalog_dir(self) -> Path:
        """User additions to the catalog (extra collections), read by ``catalog``."""
        return self.root / "catalog"

    def prepare(self) -> "Workspace":
        for kind in KINDS:
            self.dir(kind).mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.sweep_stale()
        return self

    def sweep_stale(self) -> None:
        """Remove staging folders of engine processes that died without cleaning up (SIGKILL)."""
        if not self.tmp.is_dir():
            return
        now = time.time()
        for entry in self.tmp.iterdir():
            match = re.match(r".*-(\w+)-pid(\d+)-", entry.name)
            if not match:
                continue
            own = match.group(1) == HOST  # a shared workspace: never judge another machine's processes
            dead = own and not _pid_alive(int(match.group(2)))
            if dead or now - entry.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(entry, ignore_errors=True)

    def new_id(self, kind: str, name: str) -> str:
        while True:
            candidate = f"{slugify(name)}-{secrets.token_hex(3)}"
            if not (self.dir(kind) / candidate).exists():
                return candidate

    @contextmanager
    def staging(self, kind: str, item_id: str) -> Iterator[Path]:
        """A private folder to build one item in; moved to ``<kind>/<item_id>`` when the block succeeds."""
        final = self.dir(kind) / item_id
        if final.exists():
            raise FileExistsError(final)
        stage = self.tmp / f"{kind}-{item_id}-{HOST}-pid{os.getpid()}-{secrets.token_hex(2)}"
        stage.mkdir(parents=True)
        try:
            yield stage
            os.replace(stage, final)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    @contextmanager
    def scratch(self, purpose: str) -> Iterator[Path]:
        """A private temporary folder in the workspace, removed afterwards (unpacked archives, downloads)."""
        folder = self.tmp / f"{purpose}-{HOST}-pid{os.getpid()}-{secrets.token_hex(3)}"
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def record_failure(self, kind: str, name: str, error: Any, log: list[str]) -> Path:
        """A failed attempt is not an item: it is kept beside them, with the reason and the log."""
        folder = self.root / FAILED_DIR / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{slugify(name)}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}.json"
        write_json(path, {"name": name, "status": "Failed", "created": now_iso(),
                          "error": {k: v for k, v in error.fields().items() if k != "details"},
                          "log": log})
        return path

    def failures(self, kind: str) -> list[dict[str, Any]]:
        folder = self.root / FAILED_DIR / kind
        items = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                items.append({**json.loads(path.read_text()), "record": str(path)})
            except (OSError, ValueError):
                continue
        return sorted(items, key=lambda i: i.get("created", ""), reverse=True)

    def find(self, kind: str, item_id: str) -> Path | None:
        path = self.dir(kind) / item_id
        return path if path.is_dir() else None

    def list(self, kind: str, record: str) -> list[dict[str, Any]]:
        """The JSON records (``dataset.json``, ``tune.json``, ...) of one kind, newest first."""
        items = []
        folder = self.dir(kind)
        for path in sorted(folder.glob(f"*/{record}")) if folder.is_dir() else []:
            try:
                items.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(items, key=lambda item: item.get("created", ""), reverse=True)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(json_safe(data), indent=2, ensure_ascii=False, allow_nan=False))
    os.replace(tmp, path)
