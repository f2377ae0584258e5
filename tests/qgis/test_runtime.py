"""The engine environment manager (standard library code shared by the plugin, scripts/ and the Makefile)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import wait_for

from geostudio_plugin import engine_runtime


def test_engine_environment_is_cleaned_of_qgis_python_proj_and_gdal_variables():
    inherited = {"PATH": "/usr/bin", "HOME": "/home/u", "PYTHONPATH": "/usr/share/qgis/python",
                 "PYTHONHOME": "/x", "PROJ_LIB": "/usr/share/proj", "PROJ_DATA": "/usr/share/proj",
                 "GDAL_DATA": "/usr/share/gdal", "GDAL_DRIVER_PATH": "/x", "QGIS_PREFIX_PATH": "/usr",
                 "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": "TIF", "VIRTUAL_ENV": "/venv", "LANG": "C.UTF-8"}
    env = engine_runtime.engine_environ(inherited, extra={"SH_CLIENT_ID": "id"})
    assert env["PYTHONPATH"] == str(Path(engine_runtime.__file__).resolve().parents[1])
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["SH_CLIENT_ID"] == "id"
    for dropped in ("PYTHONHOME", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH", "QGIS_PREFIX_PATH",
                    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS", "VIRTUAL_ENV"):
        assert dropped not in env
    assert {k: env[k] for k in ("PATH", "HOME", "LANG")} == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8"}
    assert engine_runtime.engine_environ(inherited, allow_downloads=True)["HF_HUB_OFFLINE"] == "0"


def test_managed_env_is_keyed_by_the_lock_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_ENGINES_DIR", str(tmp_path))
    lock_a, lock_b = tmp_path / "a.lock", tmp_path / "b.lock"
    lock_a.write_text("six==1.16.0\n")
    lock_b.write_text("six==1.17.0\n")
    assert engine_runtime.managed_env_dir(lock_a) != engine_runtime.managed_env_dir(lock_b)
    assert engine_runtime.managed_env_dir(lock_a).parent == tmp_path
    assert engine_runtime.lock_hash(engine_runtime.lock_file()) == engine_runtime.lock_hash(
        Path(engine_runtime.__file__).resolve().parents[1] / "engine-requirements.lock")


def test_no_suitable_python_gives_a_clear_way_out(monkeypatch, tmp_path):
    # Pythons that answer 3.11 (too old for TerraTorch 1.2.13) and 3.14 (too new for terrakit 0.2.2): fakes, since
    # the machine's own Python may well fit (Debian trixie's 3.13 does).
    fakes = []
    for version in ("3.11", "3.14"):
        fake = tmp_path / f"python{version}"
        fake.write_text(f"#!/bin/sh\necho {version}\n")
        fake.chmod(0o755)
        fakes.append(fake)
    monkeypatch.setattr(engine_runtime, "base_python_candidates", lambda: fakes)
    with pytest.raises(engine_runtime.EngineSetupError) as error:
        engine_runtime.find_base_python()
    assert "No Python 3.12 or 3.13" in error.value.message
    assert f"{fakes[0]} (3.11)" in error.value.message and f"{fakes[1]} (3.14)" in error.value.message
    assert "GEOSTUDIO_BASE_PYTHON" in error.value.hint and "settings" in error.value.hint


def tiny_wheel(folder: Path, name: str = "geostudio_probe", version: str = "0.1") -> Path:
    """A pure-Python wheel written with zipfile (no build tools, no network): one module saying its version."""
    import base64
    import hashlib
    import zipfile

    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: geostudio-tests\n"
                                             "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record + [f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_setup_task_builds_an_env_from_a_lock_and_streams_pip_output(qgis_iface, tmp_path, monkeypatch):
    """The real build path (venv, pip upgrade, pip install -r lock, ready marker) on a one-package lock.

    No package index: the lock names a wheel built here and pip may only look in its folder (--no-index in the
    lock for the install; PIP_NO_INDEX for the pip self-upgrade, which then keeps the venv's own pip)."""
    import subprocess

    from geostudio_plugin import tasks

    base = engine_runtime.find_base_python()
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    lock = tmp_path / "engine-requirements.lock"
    lock.write_text(f"--no-index\n--find-links {wheels}\ngeostudio_probe==0.1\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("GEOSTUDIO_ENGINES_DIR", str(tmp_path / "engines"))
    monkeypatch.setattr(engine_runtime, "lock_file", lambda: lock)
    pythons, failures, lines = [], [], []
    task = tasks.SetupEngineTask()
    task.succeeded.connect(pythons.append)
    task.failed.connect(failures.append)
    task.lineReceived.connect(lines.append)
    tasks.start(task)
    wait_for(lambda: task not in tasks._alive, timeout=300)
    assert task.exception is None and not failures, (task.exception, failures, lines[-20:])
    env_dir = engine_runtime.managed_env_dir(lock)
    assert pythons == [engine_runtime.venv_python(env_dir)]
    marker = json.loads((env_dir / engine_runtime.READY_MARKER).read_text())
    assert marker["lock_hash"] == engine_runtime.lock_hash(lock)
    assert marker["python"] == ".".join(map(str, engine_runtime.python_version(base)))
    assert any("-m venv" in line for line in lines)
    assert any("Successfully installed geostudio_probe-0.1" in line or "Successfully installed geostudio-probe-0.1"
               in line for line in lines), lines[-20:]
    assert task.status() == task.TaskStatus.Complete
    assert os.access(engine_runtime.venv_python(env_dir), os.X_OK)
    probe = subprocess.run([str(engine_runtime.venv_python(env_dir)), "-c",
                            "import geostudio_probe; print(geostudio_probe.VERSION)"],
                           capture_output=True, text=True, env=engine_runtime.scrubbed_environ(), timeout=60)
    assert probe.stdout.strip() == "0.1", probe.stderr
