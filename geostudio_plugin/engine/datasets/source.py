"""Where a dataset comes from: a local folder, a local zip or tar, or a URL to one.

Archives are unpacked into a private folder; a member whose path would land outside it (``..``,
an absolute path, a link) stops the onboarding before anything is written. Downloads go to a
temporary name with the connectors' timeouts and retries, so a broken transfer leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import unquote, urlparse

from .. import protocol
from ..protocol import EngineError
from .scan import E_SOURCE

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _is_windows_drive(url: str) -> bool:
    return len(url) > 2 and url[1] == ":" and url[2] in "\\/"


def _local(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or _is_windows_drive(url):
        return Path(url).expanduser()
    return None


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":")


def extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar into target, refusing members that would escape it."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                names = [i.filename for i in zipped.infolist()]
                bad = [n for n in names if _unsafe(n)]
                if bad:
                    raise EngineError(E_SOURCE, f"Archive {archive.name} has member(s) that would be written outside "
                                      f"the dataset folder: {bad[:5]}.", "Rebuild the archive with relative paths "
                                      "inside one folder (no '..', no absolute paths).")
                if not [i for i in zipped.infolist() if not i.is_dir()]:
                    raise EngineError(E_SOURCE, f"Archive {archive.name} is empty.",
                                      "Put the image and label GeoTIFFs into the archive.")
                zipped.extractall(target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                members = tarred.getmembers()
                bad = [m.name for m in members if _unsafe(m.name) or m.issym() or m.islnk() or m.isdev()]
                if bad:
                    raise EngineError(E_SOURCE, f"Archive {archive.name} has member(s) that would be written outside "
                                      f"the dataset folder or are links/devices: {bad[:5]}.",
                                      "Rebuild the archive with plain files under relative paths.")
                if not [m for m in members if m.isfile()]:
                    raise EngineError(E_SOURCE, f"Archive {archive.name} is empty.",
                                      "Put the image and label GeoTIFFs into the archive.")
                tarred.extractall(target, filter="data")
        else:
            raise EngineError(E_SOURCE, f"{archive} is neither a folder nor a zip or tar archive.",
                              "Point dataset_url at a folder, a .zip or a .tar(.gz).")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise EngineError(E_SOURCE, f"Archive {archive.name} cannot be read: {exc}.",
                          "The file is damaged or incomplete; download or build it again.") from None


def download(url: str, target: Path) -> Path:
    """HTTP(S) download to a temporary name, renamed when complete (timeouts and retries from the network policy)."""
    import requests

    from ..connectors import network

    policy = network.install()
    name = Path(unquote(urlparse(url).path)).name or "dataset.zip"
    final = target / name
    partial = target / f".{name}.part"
    protocol.progress("download", 0.01, f"downloading {url}")

    def fetch() -> None:
        with requests.get(url, stream=True) as response:
            response.raise_for_status()
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind in ("text/html", "application/xhtml+xml"):  # a folder listing or a landing page
                folder = "a folder" if urlparse(response.url or url).path.endswith("/") else "not an archive"
                raise EngineError(E_SOURCE, f"dataset_url {url} is {folder}: the server answers with a web page "
                                  f"({kind}), not a zip or tar archive.",
                                  "Point dataset_url at the archive itself (a link ending in .zip or .tar.gz), or "
                                  "download the folder and give its local path.")
            expected = int(response.headers.get("Content-Length") or 0)
            written = 0
            with open(partial, "wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
                    written += len(chunk)
                    if expected:
                        protocol.progress("download", 0.01 + 0.04 * written / expected,
                                          f"downloaded {written / 1e6:.1f} of {expected / 1e6:.1f} MB")
            if expected and written != expected:
                raise requests.exceptions.ChunkedEncodingError(f"got {written} of {expected} bytes")

    try:
        network.with_retries(fetch, policy)  # the one retry rule: what urllib3 did not retry already
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise EngineError(E_SOURCE, f"Downloading {url} failed: {protocol.redact(str(exc))[:300]}.",
                          "Check the URL and your network; the server may have dropped the connection.") from None
    os.replace(partial, final)
    return final


@contextmanager
def materialise(dataset_url: str, scratch: Path) -> Iterator[Path]:
    """A local folder holding the dataset's files; temporary copies are removed afterwards."""
    local = _local(dataset_url)
    if local is not None and local.is_dir():
        yield local
        return
    work = scratch / "source"
    work.mkdir(parents=True, exist_ok=True)
    try:
        if local is None:
            if urlparse(dataset_url).scheme not in ("http", "https"):
                raise EngineError(E_SOURCE, f"dataset_url {dataset_url}: unsupported scheme.",
                                  "Use a local folder or archive path, file://, http:// or https://.")
            local = download(dataset_url, work)
        elif not local.exists():
            raise EngineError(E_SOURCE, f"dataset_url {dataset_url}: no such file or folder.",
                              "Point dataset_url at a folder, a .zip or a .tar(.gz) of image and label GeoTIFFs.")
        unpacked = work / "unpacked"
        unpacked.mkdir()
        protocol.progress("unpack", 0.05, f"unpacking {local.name}")
        extract(local, unpacked)
        yield unpacked
    finally:
        shutil.rmtree(work, ignore_errors=True)
