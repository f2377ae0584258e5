"""The workspace folder: where datasets, tuned models and inference runs are kept.

Every output is built in ``.tmp/`` and renamed into place only when complete,
so a failed or cancelled command never leaves something that looks finished.

A command that writes checks first that it can (a write probe in every folder it uses), so a read-only
workspace is refused before any work. An item in use is locked: ``locks/<kind>-<id>.<job>.lock`` is a
small JSON file (command, pid, host, start time) per job using it, removed when the job ends however it
ends; ``delete`` refuses an item with a live lock. A lock whose process is gone is broken by the next
look at it: at once on this host, after 24 h for a lock from another host (its pid means nothing here).
"""

from __future__ import annotations

import errno
import glob
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
from typing import Any, Iterator, Optional

from .protocol import EngineError, json_safe
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
LOCKS_DIR = "locks"
# commands that never write to the workspace: the write probe is skipped, so a read-only workspace can be listed
READ_ONLY_COMMANDS = frozenset({"catalog", "list", "check", "search"})
CHANGE_WORKSPACE = "--workspace, GEOSTUDIO_WORKSPACE or GeoStudio > Settings"


def unusable(root: Path, folder: Path, exc: OSError) -> EngineError:
    """The ``workspace_unusable`` error for an OSError met while preparing or probing the workspace."""
    if exc.errno == errno.EROFS:
        return EngineError("workspace_unusable", f"The workspace {root} is on a read-only file system: {folder} "
                           "cannot be written.", "Remount that file system read-write, or choose another workspace "
                           f"folder ({CHANGE_WORKSPACE}).")
    reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
    return EngineError("workspace_unusable", f"The workspace {root} cannot be used: {folder} cannot be written "
                       f"({reason}).", f"Choose a folder you can write to ({CHANGE_WORKSPACE}).")


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
    command = "engine"  # the command using the workspace, named in its locks (set by ``prepare``)

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

    @property
    def locks(self) -> Path:
        return self.root / LOCKS_DIR

    def prepare(self, command: Optional[str] = None) -> "Workspace":
        """Create the folders; for a command that writes, prove that every folder it uses can be written.

        Raises ``workspace_unusable`` (before any work) when they cannot: a read-only file system,
        no permission, a file where a folder should be.
        """
        if command:
            self.command = command
        writes = command not in READ_ONLY_COMMANDS
        folders = [self.dir(kind) for kind in KINDS] + [self.tmp, self.locks]
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # a command that only reads does without what it cannot create (locks/, a kind folder an older
                # read-only workspace lacks, such as templates/): that kind is empty to it
                if writes or not self.root.is_dir():
                    raise unusable(self.root, folder, exc) from None
        if writes:
            for folder in [self.root] + folders:
                self._probe(folder)
        self.sweep_stale()
        return self

    def _probe(self, folder: Path) -> None:
        """Create and remove a file in ``folder`` (os.access cannot tell: root passes it on a read-only mount)."""
        probe = folder / f".probe-{HOST}-pid{os.getpid()}-{secrets.token_hex(2)}"
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise unusable(self.root, folder, exc) from None

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
                if entry.name.startswith("tunes-") and entry.is_dir():
                    self._salvage_tune(entry)
                shutil.rmtree(entry, ignore_errors=True)
        if self.locks.is_dir():
            for path in self.locks.glob("*.lock"):
                self._read_lock(path)  # breaks it when stale
            for path in self.locks.glob("*.lock.part"):  # a lock half-written by a killed process
                try:
                    if now - path.stat().st_mtime > 60:
                        path.unlink()
                except OSError:
                    pass

    # ------------------------------------------------------------------------------------------ locks

    @contextmanager
    def lock(self, kind: str, item_id: str) -> Iterator[Path]:
        """Mark ``<kind>/<item_id>`` as in use by this process for the block (released on every exit path)."""
        self.locks.mkdir(parents=True, exist_ok=True)
        path = self.locks / f"{kind}-{_lock_name(item_id)}.{HOST}-pid{os.getpid()}-{secrets.token_hex(3)}.lock"
        write_json(path, {"kind": kind, "id": item_id, "command": self.command, "pid": os.getpid(), "host": HOST,
                          "hostname": socket.gethostname(), "since": now_iso(), "since_ts": time.time()})
        try:
            yield path
        finally:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _read_lock(self, path: Path) -> Optional[dict[str, Any]]:
        """A lock's record, or None when it is gone or stale (a stale or unreadable one is removed)."""
        try:
            info = json.loads(path.read_text())
            pid, host, since = int(info["pid"]), str(info["host"]), float(info["since_ts"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            info = None  # not a lock record: broken unless it is fresh (a lock is written whole, by rename)
            try:
                stale = time.time() - path.stat().st_mtime > 60
            except OSError:
                return None
        else:
            old = time.time() - since > STALE_AFTER_S
            if host == HOST:  # (Windows cannot ask whether a pid runs: age decides there too)
                stale = pid != os.getpid() and (not _pid_alive(pid) or (os.name == "nt" and old))
            else:  # another machine's pid means nothing here
                stale = old
        if stale:
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return info

    def holders(self, kind: str, item_id: str) -> list[dict[str, Any]]:
        """The live locks of one item: who is using it (stale locks are broken on the way)."""
        if not self.locks.is_dir():
            return []
        found = []
        for path in sorted(self.locks.glob(glob.escape(f"{kind}-{_lock_name(item_id)}.") + "*.lock")):
            info = self._read_lock(path)
            if info and info.get("kind") == kind and info.get("id") == item_id:
                found.append(info)
        return found

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
        with self.lock(kind, item_id):  # an item being built is in use
            stage.mkdir(parents=True)
            try:
                yield stage
                os.replace(stage, final)
            finally:
                if stage.exists():
                    shutil.rmtree(stage, ignore_errors=True)

    @contextmanager
    def building(self, kind: str, item_id: str, replace: bool = False) -> Iterator["Building"]:
        """Like ``staging``, but the block may keep what it built when it ends with an exception
        (``build.keep = True``: a cancelled tune keeps its last checkpoint), and with ``replace`` the
        built folder replaces an existing item (a resumed tune) instead of refusing it.

        The item is locked while it is built. Replacing moves the old folder aside, the new one in,
        then removes the old one: a reader sees the old item or the new one, never a mixture.
        """
        final = self.dir(kind) / item_id
        if final.exists() and not replace:
            raise FileExistsError(final)
        stage = self.tmp / f"{kind}-{item_id}-{HOST}-pid{os.getpid()}-{secrets.token_hex(2)}"
        with self.lock(kind, item_id):
            stage.mkdir(parents=True)
            build = Building(stage, final)
            try:
                yield build
            except BaseException:
                if build.keep:
                    self._put_in_place(stage, final)
                raise
            else:
                self._put_in_place(stage, final)
            finally:
                if stage.exists():
                    shutil.rmtree(stage, ignore_errors=True)

    def _put_in_place(self, stage: Path, final: Path) -> None:
        if not final.exists():
            os.replace(stage, final)
            return
        aside = self.tmp / f"replaced-{final.name}-{HOST}-pid{os.getpid()}-{secrets.token_hex(2)}"
        os.replace(final, aside)
        os.replace(stage, final)
        shutil.rmtree(aside, ignore_errors=True)

    def _salvage_tune(self, stage: Path) -> None:
        """A tune whose engine died (SIGKILL, a crash, the machine went down) left its staging folder.

        With a last checkpoint it becomes a tune with status "Failed" (resumable), its record saying what
        happened and holding the tail of its log; without one, a failure record in ``failed/tunes/`` keeps the
        reason and the log. A resumed tune's folder replaces the kept one only when it got further.
        """
        try:
            record = json.loads((stage / RECORDS["tunes"]).read_text())
            tune_id = str(record["tune_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # it never got as far as its record: nothing to report
        log_path = stage / TUNE_LOG
        try:
            log = log_path.read_text(errors="replace").splitlines()[-200:]
        except OSError:
            log = []
        done = int(record.get("epochs_run") or 0)
        planned = record.get("model_parameters", {}).get("runner", {}).get("max_epochs", "?")
        error = EngineError("engine_died", f"The engine running tune {tune_id} stopped without finishing (killed, "
                            f"crashed or the machine went down) after {done} of {planned} epochs; found "
                            f"{now_iso()}.", "Resume the tune if it kept a checkpoint, or run it again; its log "
                            "is in the record.")
        has_checkpoint = (stage / "checkpoints" / "last.ckpt").is_file()
        final = self.dir("tunes") / tune_id
        if has_checkpoint:
            try:
                kept = json.loads((final / RECORDS["tunes"]).read_text()) if final.is_dir() else None
            except (OSError, ValueError):
                kept = None
            if final.exists() and kept is not None and int(kept.get("epochs_run") or 0) >= done:
                has_checkpoint = False  # the kept tune got as far: it stays as it is; the attempt is logged
            else:
                record.update({"status": "Failed", "error": {k: v for k, v in error.fields().items()
                                                            if k != "details"}, "log_tail": log, "pid": None,
                               "resumable": True, "last_checkpoint": "checkpoints/last.ckpt", "stopped": now_iso()})
                best = sorted((stage / "checkpoints").glob("best-*.ckpt"))
                record["checkpoint"] = str(best[-1].relative_to(stage)) if best else None
                try:
                    write_json(stage / RECORDS["tunes"], record)
                    self._put_in_place(stage, final)
                    return
                except OSError:
                    has_checkpoint = False
        if not has_checkpoint:
            try:
                self.record_failure("tunes", str(record.get("name") or tune_id), error, log)
            except OSError:
                pass

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
                item = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(item, dict):  # a record changed by hand into a list or null is passed over
                items.append(item)
        return sorted(items, key=lambda item: str(item.get("created", "")), reverse=True)


class Building:
    """A folder being built (``Workspace.building``): ``path`` to write in; ``keep`` to keep it on an exception."""

    def __init__(self, path: Path, final: Path) -> None:
        self.path, self.final = path, final
        self.keep = False


TUNE_LOG = "engine.log"  # a tune's own log, in its folder (read back when its engine died)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(json_safe(data), indent=2, ensure_ascii=False, allow_nan=False))
    os.replace(tmp, path)


def _lock_name(item_id: str) -> str:
    """The id as it appears in a lock file's name (the record inside holds the id itself)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:80] or "_"


def read_record(path: Path, what: str, required: tuple[str, ...]) -> dict[str, Any]:
    """An item's JSON record (``dataset.json``, ``tune.json``), or ``record_invalid`` naming the file and field.

    A record changed by hand (broken JSON, a field removed) would otherwise fail deep in a command.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EngineError("record_invalid", f"The record of {what}, {path}, cannot be read: {exc}.",
                          "It was changed by hand or damaged: restore it, or delete the item and create it again.")
    missing = [k for k in required if not isinstance(record, dict) or k not in record]
    if missing:
        raise EngineError("record_invalid", f"The record of {what}, {path}, lacks {', '.join(missing)}.",
                          "It was changed by hand or damaged: restore it, or delete the item and create it again.")
    return record


def describe_job(info: dict[str, Any]) -> str:
    """``tune (pid 123 on host, since 2026-...)``: a lock's job, for messages."""
    return (f"`{info.get('command', '?')}` (pid {info.get('pid', '?')} on {info.get('hostname') or info.get('host')}, "
            f"since {info.get('since', '?')})")
