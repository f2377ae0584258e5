"""Run the QGIS test suite on every QGIS version of the matrix and print one line per version.

    python3 scripts/qgis_matrix.py [VERSION ...]     (default: every version `scripts/qgis-root versions` knows)

A version the machine's own QGIS already is (3.22 on Debian bookworm) runs on the machine; every other
version runs in its Debian root (scripts/qgis-root builds it on first use). Standard library only: it runs
on the system Python before anything else is installed. Exit status 1 when any version failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
QGIS_ROOT = REPO / "scripts" / "qgis-root"
RESULTS = REPO / "build" / "test-results"
HOST_PYTEST = [str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "tests/qgis", "-q",
               "-p", "no:cacheprovider", "--qgis_disable_gui"]
# Tests that train a model for real beyond the session's one, or whose time goes into long engine jobs (importing
# a model or a template builds it), exercise the engine, which is the same on every QGIS version: they run on the
# machine's own QGIS; the other versions run the rest (keeps make test < 30 min).
ROOT_SELECTION = ["-m", "not training and not engine_bound"]


@dataclass(frozen=True)
class Outcome:
    version: str
    where: str
    passed: int
    failed: int
    skipped: int
    seconds: float

    def line(self) -> str:
        verdict = "ok" if self.failed == 0 and self.passed > 0 else "FAILED"
        return (f"QGIS {self.version:<10} {self.where:<52} {self.passed:>3} passed, {self.failed} failed, "
                f"{self.skipped} skipped in {self.seconds:.0f} s  {verdict}")


def known_versions() -> dict[str, str]:
    out = subprocess.run([str(QGIS_ROOT), "versions"], capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def host_qgis() -> Optional[tuple[str, str]]:
    """(full QGIS version, Python version) of the machine's own QGIS, if it has one."""
    probe = "from qgis.core import Qgis; import platform; print(Qgis.QGIS_VERSION.split('-')[0], platform.python_version())"
    done = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True)
    return tuple(done.stdout.split()[:2]) if done.returncode == 0 else None  # type: ignore[return-value]


def root_facts(version: str) -> dict[str, str]:
    root = subprocess.run([str(QGIS_ROOT), "path", version], capture_output=True, text=True, check=True).stdout.strip()
    marker = Path(root) / ".geostudio-root"
    if not marker.is_file():
        return {}
    return dict(line.split("=", 1) for line in marker.read_text().splitlines() if "=" in line)


def counts(junit: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from pytest's JUnit XML; a run that wrote none counts as one failure."""
    if not junit.is_file():
        return 0, 1, 0
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    return total - failures - errors - skipped, failures + errors, skipped


def on_host(version: str, host: Optional[tuple[str, str]]) -> bool:
    return host is not None and ".".join(host[0].split(".")[:2]) == version


def run_on_host(version: str, host: tuple[str, str]) -> Outcome:
    """The machine's own QGIS, output streamed: it runs the training and engine-bound tests too."""
    junit = RESULTS / f"qgis-{version}.xml"
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    print(f"\n=== QGIS {version}: this machine ===", flush=True)
    subprocess.run(HOST_PYTEST + [f"--junitxml={junit}"], cwd=REPO, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    full, python = host
    return Outcome(full, f"(this machine, Python {python})", *counts(junit), time.monotonic() - started)


def start_in_root(version: str, index: int) -> tuple[subprocess.Popen, Path, float]:
    """One version's suite in its Debian root, in the background, its output to a log file (the versions run
    side by side; each X server gets its own display range)."""
    junit, log = RESULTS / f"qgis-{version}.xml", RESULTS / f"qgis-{version}.log"
    junit.unlink(missing_ok=True)
    env = {**os.environ, "GEOSTUDIO_TEST_XVFB_SERVERNUM": str(200 + 100 * index)}
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([str(QGIS_ROOT), "test", version, f"--junitxml={junit}", *ROOT_SELECTION], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log, time.monotonic()


def run_in_roots(wanted: list[str], versions: dict[str, str]) -> list[Outcome]:
    """The root versions at the same time: their suites are light (no training, no engine-bound tests) and each
    keeps about one core busy, so two side by side take the time of one. Each log is printed when all end."""
    running = {v: start_in_root(v, i) for i, v in enumerate(wanted)}
    print(f"\n=== QGIS {', '.join(wanted)}: Debian roots, side by side (logs in {RESULTS}) ===", flush=True)
    outcomes = []
    for version, (proc, log, started) in running.items():
        proc.wait()
        seconds = time.monotonic() - started
        print(f"\n=== QGIS {version}: Debian {versions[version]} root ===\n{log.read_text(errors='replace')}", flush=True)
        facts = root_facts(version)
        where = f"(Debian {versions[version]} root, Python {facts.get('python', '?')}, not training or engine_bound)"
        outcomes.append(Outcome(facts.get("qgis", version).split("+")[0], where,
                                *counts(RESULTS / f"qgis-{version}.xml"), seconds))
    return outcomes


def main(argv: list[str]) -> int:
    versions = known_versions()
    wanted = argv or sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
    unknown = [v for v in wanted if v not in versions]
    if unknown:
        print(f"Unknown QGIS version(s) {', '.join(unknown)}; known: {', '.join(versions)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    host = host_qgis()
    outcomes = [run_on_host(v, host) for v in wanted if on_host(v, host)]  # type: ignore[arg-type]
    rooted = [v for v in wanted if not on_host(v, host)]
    for version in rooted:  # build missing roots one at a time first (a build is the only step that downloads)
        subprocess.run([str(QGIS_ROOT), "build", version], cwd=REPO, stdout=subprocess.DEVNULL, check=False)
    outcomes += run_in_roots(rooted, versions) if rooted else []
    print("\nQGIS test matrix:")
    for outcome in outcomes:
        print("  " + outcome.line())
    return 0 if all(o.failed == 0 and o.passed > 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
