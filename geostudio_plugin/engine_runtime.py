"""Find, build and launch the engine's own Python environment.

Standard library only: the QGIS plugin, ``scripts/engine`` and the Makefile
all use this one module, so users, CI and the plugin build the engine
environment the same way.

The environment is a virtual environment made from a Python >= 3.12 and
filled from the committed lock file. It lives outside the plugin, in the
user's data folder, in a folder named after the hash of the lock file: a new
lock makes a new environment and the old one is never half-upgraded.

Command line (``python -m geostudio_plugin.engine_runtime``):
  ensure        build the environment when missing; print its python
  python        print the python of a ready environment (exit 1 if none)
  info          print paths and state as JSON
  run ARGS...   run ``-m geostudio_plugin.engine ARGS`` in a clean environment
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

from .engine.workspace import default_workspace, user_data_dir  # noqa: F401 - one rule for both sides

LOCK_NAME = "engine-requirements.lock"
READY_MARKER = "geostudio-engine.json"
MIN_PYTHON = (3, 12)
MAX_PYTHON = (3, 13)  # terrakit 0.2.2 pins tacotoolbox, which caps Python < 3.14
ENGINE_MODULE = "geostudio_plugin.engine"
# Jobs run at this lower CPU priority (POSIX nice): torch keeps every core busy, and QGIS's main thread must still
# get one the moment it needs it (measured in tests/qgis/test_inference.py). GEOSTUDIO_ENGINE_NICE overrides it.
ENGINE_NICE = 10
# Measured on a 2-core Linux machine with PyPI's CUDA build of torch.
ENV_SIZE_NOTE = "about 7 GB on Linux (PyPI's torch is the CUDA build), about 1.5 GB on Windows and macOS"

# Variables that must not leak from QGIS (or a developer shell) into the engine:
# QGIS's PROJ and GDAL data are older than the ones rasterio bundles.
_DROPPED_PREFIXES = ("PYTHON", "PROJ", "GDAL", "QGIS", "CPL_")
_DROPPED_NAMES = {"VIRTUAL_ENV", "CONDA_PREFIX", "__PYVENV_LAUNCHER__"}

LineCallback = Callable[[str], None]
CancelCheck = Callable[[], bool]


class EngineSetupError(Exception):
    """A setup failure with a message and a hint a user can act on."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class SetupCancelled(EngineSetupError):
    def __init__(self) -> None:
        super().__init__("Engine setup was cancelled.", "Run it again to finish it.")


# ---------------------------------------------------------------- locations


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def plugin_parent() -> Path:
    """The folder that holds the ``geostudio_plugin`` package: the engine's PYTHONPATH."""
    return package_dir().parent


def lock_file() -> Path:
    """The lock inside an installed plugin, else the one at the repository root."""
    for candidate in (package_dir() / LOCK_NAME, plugin_parent() / LOCK_NAME):
        if candidate.is_file():
            return candidate
    raise EngineSetupError(
        f"The engine lock file {LOCK_NAME} is missing next to {package_dir()}.",
        "Reinstall the plugin from its zip, or run from a complete clone of the repository.",
    )


def lock_hash(lock: Optional[Path] = None) -> str:
    data = (lock or lock_file()).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()[:16]


def engines_dir() -> Path:
    override = os.environ.get("GEOSTUDIO_ENGINES_DIR")
    return Path(override).expanduser() if override else user_data_dir() / "engines"


def managed_env_dir(lock: Optional[Path] = None) -> Path:
    return engines_dir() / f"engine-{lock_hash(lock)}"


def venv_python(env_dir: Path) -> Path:
    if sys.platform.startswith("win"):
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def is_ready(env_dir: Path) -> bool:
    return (env_dir / READY_MARKER).is_file() and venv_python(env_dir).exists()


def resolve_engine_python(override: str = "") -> Optional[Path]:
    """The interpreter to run the engine with: the user's choice, else the managed env if ready."""
    if override:
        path = Path(override).expanduser()
        return path if path.exists() else None
    env_dir = managed_env_dir()
    return venv_python(env_dir) if is_ready(env_dir) else None


# ------------------------------------------------------------ base pythons


def python_version(python: Path) -> Optional[tuple[int, int]]:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _pyenv_candidates() -> Iterable[Path]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = root / "versions"
    if not versions.is_dir():
        return []

    def key(path: Path) -> tuple[int, int]:
        # 3.12 first (the lock is made on it), then the newest patch release
        minor, patch = (int(p) for p in path.name.split(".")[1:3])
        return (minor != 12, -patch)

    found = [v for v in versions.iterdir() if re.fullmatch(r"3\.1[23]\.\d+", v.name)]
    return [v / "bin" / "python" for v in sorted(found, key=key)]


def base_python_candidates() -> list[Path]:
    names = [f"python{major}.{minor}" for major, minor in ((3, 12), (3, 13))]
    found: list[Path] = []
    if os.environ.get("GEOSTUDIO_BASE_PYTHON"):
        found.append(Path(os.environ["GEOSTUDIO_BASE_PYTHON"]))
    for name in names:
        where = shutil.which(name)
        if where:
            found.append(Path(where))
    found.extend(_pyenv_candidates())
    for name in ("python3", "python"):
        where = shutil.which(name)
        if where:
            found.append(Path(where))
    return found


def find_base_python() -> Path:
    """A Python in [3.12, 3.13] to create the engine venv from."""
    tried = []
    for candidate in base_python_candidates():
        version = python_version(candidate)
        tried.append(f"{candidate} ({'.'.join(map(str, version)) if version else 'not runnable'})")
        if version and MIN_PYTHON <= version <= MAX_PYTHON:
            return candidate
    raise EngineSetupError(
        "No Python 3.12 or 3.13 found to build the GeoStudio engine (TerraTorch 1.2.13 needs >= 3.12, "
        "terrakit 0.2.2 < 3.14). Tried: " + ("; ".join(tried) or "nothing on PATH"),
        "Install one (Debian/Ubuntu: `pyenv install 3.12`, or your distribution's python3.12 with venv), "
        "set GEOSTUDIO_BASE_PYTHON to it, or point GeoStudio's settings at an existing engine interpreter.",
    )


# ----------------------------------------------------------------- building


def _run_streaming(cmd: list[str], on_line: LineCallback, is_canceled: CancelCheck, env: Mapping[str, str]) -> None:
    on_line("$ " + " ".join(cmd))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env),
        start_new_session=True, bufsize=1,
    )
    assert proc.stdout is not None
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(l) for l in proc.stdout], lines.put(None)), daemon=True).start()
    try:
        while True:  # poll for Cancel even while pip is silent (a large download prints nothing for minutes)
            if is_canceled():
                raise SetupCancelled()
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            on_line(line.rstrip())
        proc.wait()
    except BaseException:
        terminate_group(proc)
        raise
    proc.stdout.close()  # the reader thread has seen EOF
    if proc.returncode != 0:
        raise EngineSetupError(
            f"Command failed with exit code {proc.returncode}: {' '.join(cmd)}",
            "Read the setup log above for the first error; check the network access to the package index.",
        )


def build_env(
    env_dir: Optional[Path] = None,
    lock: Optional[Path] = None,
    base_python: Optional[Path] = None,
    on_line: LineCallback = print,
    is_canceled: CancelCheck = lambda: False,
) -> Path:
    """Create the engine venv from the lock.

    A venv cannot be moved once made (its scripts hold their own path), so it is
    built in place and the ready marker, written last, is what makes it count:
    a folder without the marker is an unfinished build and is started over.
    """
    lock = lock or lock_file()
    env_dir = env_dir or managed_env_dir(lock)
    if is_ready(env_dir):
        return venv_python(env_dir)
    base_python = base_python or find_base_python()
    if env_dir.exists():
        on_line(f"Removing an unfinished build: {env_dir}")
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env = scrubbed_environ()
    try:
        _run_streaming([str(base_python), "-m", "venv", str(env_dir)], on_line, is_canceled, env)
        py = str(venv_python(env_dir))
        pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        # The pip bundled with older Pythons backtracks for many minutes on terrakit's pins.
        _run_streaming(pip + ["install", "--upgrade", "pip"], on_line, is_canceled, env)
        _run_streaming(pip + ["install", "--progress-bar", "off", "-r", str(lock)], on_line, is_canceled, env)
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    marker = {
        "lock_hash": lock_hash(lock),
        "python": ".".join(map(str, python_version(Path(py)) or ())),
        "built_seconds": round(time.monotonic() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (env_dir / READY_MARKER).write_text(json.dumps(marker, indent=2))
    on_line(f"Engine environment ready in {time.monotonic() - started:.0f} s: {env_dir}")
    return venv_python(env_dir)


# ---------------------------------------------------------------- launching


def scrubbed_environ(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    base = os.environ if base is None else base
    return {
        key: value for key, value in base.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_NAMES
    }


def engine_environ(
    base: Optional[Mapping[str, str]] = None,
    extra: Optional[Mapping[str, str]] = None,
    allow_downloads: bool = False,
) -> dict[str, str]:
    """The engine's environment: inherited variables cleaned, then our own set."""
    env = scrubbed_environ(base)
    env["PYTHONPATH"] = str(plugin_parent())
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["HF_HUB_OFFLINE"] = "0" if allow_downloads else "1"
    env.setdefault("GEOSTUDIO_ENGINE_NICE", str(ENGINE_NICE))
    env.update(extra or {})
    return env


def engine_command(python: Path, command: str, args: Iterable[str] = (), workspace: Optional[Path] = None) -> list[str]:
    cmd = [str(python), "-m", ENGINE_MODULE]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    return cmd + [command, *args]


def terminate_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process started with start_new_session and all its children: TERM, then KILL."""
    if proc.poll() is not None:
        return
    if sys.platform.startswith("win"):  # the whole tree (DataLoader workers included), not only the leader
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:  # children may outlive the leader; sweep the whole group either way
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# ---------------------------------------------------------------------- CLI


def _ensure(quiet: bool) -> Path:
    python = resolve_engine_python(os.environ.get("GEOSTUDIO_ENGINE_PYTHON", ""))
    if python:
        return python
    env_dir = managed_env_dir()
    print(f"Building the GeoStudio engine environment in {env_dir} ({ENV_SIZE_NOTE}).", file=sys.stderr)
    return build_env(env_dir, on_line=(lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr)))


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "info"
    try:
        if command == "ensure":
            print(_ensure(quiet="--quiet" in argv))
        elif command == "python":
            python = resolve_engine_python(os.environ.get("GEOSTUDIO_ENGINE_PYTHON", ""))
            if not python:
                print("The engine environment is not built; run `make engine` or scripts/engine.", file=sys.stderr)
                return 1
            print(python)
        elif command == "info":
            env_dir = managed_env_dir()
            print(json.dumps({
                "lock_file": str(lock_file()), "lock_hash": lock_hash(), "env_dir": str(env_dir),
                "ready": is_ready(env_dir), "workspace": str(default_workspace()),
            }, indent=2))
        elif command == "run":
            python = _ensure(quiet=False)
            args = argv[1:]
            if args and args[0] == "--":
                args = args[1:]
            cmd = [str(python), "-m", ENGINE_MODULE, *args]
            env = engine_environ(allow_downloads=os.environ.get("GEOSTUDIO_ALLOW_DOWNLOADS") == "1")
            if sys.platform.startswith("win"):
                return subprocess.call(cmd, env=env)
            os.execve(cmd[0], cmd, env)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except EngineSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
