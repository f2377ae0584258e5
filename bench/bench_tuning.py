"""Benchmark: fine-tuning through the GeoStudio engine against plain `terratorch fit`, same run, same config.

Data: the bundled real Sen1Floods11 Sentinel-1 scenes, onboarded as in `make demo` (24 chips of 256 px).
Model: timm_resnet18 + UNet from the `timm_resnet : Segmentation` template, batch 4, CPU unless a GPU is seen.

- GeoStudio: `python -m geostudio_plugin.engine tune` (spec checks, rendering, Lightning with the protocol
  callback's progress and metric events, the tune package written at the end, a test pass on the best weights).
- Plain: `terratorch fit -c config.yaml` on the config that tune rendered (paths moved to a fresh folder).

Each side runs for 1 and for N epochs; the time per epoch after imports and set-up is (T_N - T_1) / (N - 1),
which cancels start-up, imports and the one-off work at either end. Prints both, their ratio and each side's
peak memory (RSS of the process tree's largest process). Usage:
  python bench/bench_tuning.py [--epochs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
TERRATORCH = Path(sys.executable).with_name("terratorch")
LAUNCHER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc)")


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command, measured by a small launcher process of its own."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, env=ENV,
                         check=True).stdout.split()
    if int(out[2]) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return float(out[0]), float(out[1])


def engine(workspace: Path, command: str, spec: dict) -> list[str]:
    path = workspace.parent / f"{command}-{len(list(workspace.parent.glob('*.json')))}.json"
    path.write_text(json.dumps(spec))
    return [sys.executable, "-m", "geostudio_plugin.engine", "--workspace", str(workspace), command, str(path)]


def onboard(workspace: Path) -> str:
    payload = json.loads((REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    payload.update(dataset_name="bench tuning", dataset_url=str(SAMPLES / "train"))
    payload["onboarding_options"]["chip_size"] = 256
    timed(engine(workspace, "onboard", payload))
    return json.loads(next((workspace / "datasets").glob("*/dataset.json")).read_text())["dataset_id"]


def tune_spec(dataset_id: str, epochs: int) -> dict:
    return {"name": f"bench-{epochs}", "dataset_id": dataset_id, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg",
            "model_parameters": {"runner": {"max_epochs": epochs, "early_stopping_patience": 0},
                                 "data": {"batch_size": 4}, "optimizer": {"lr": 0.001}}}


def ours(workspace: Path, dataset_id: str, epochs: int) -> tuple[float, float, Path]:
    before = set((workspace / "tunes").glob("*")) if (workspace / "tunes").is_dir() else set()
    seconds, peak = timed(engine(workspace, "tune", tune_spec(dataset_id, epochs)))
    (folder,) = set((workspace / "tunes").glob("*")) - before
    return seconds, peak, folder / "config.yaml"


def plain(config: Path, run_dir: Path) -> tuple[float, float]:
    """`terratorch fit` on our rendered config, writing into run_dir instead of the tune folder."""
    run_dir.mkdir(parents=True)
    text = config.read_text().replace(str(config.parent), str(run_dir))
    moved = run_dir / "config.yaml"
    moved.write_text(text)
    return timed([str(TERRATORCH), "fit", "-c", str(moved)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="geostudio-bench-tuning-"))
    workspace = work / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        dataset_id = onboard(workspace)
        rows = {}
        for epochs in (1, args.epochs):
            ours_s, ours_mb, config = ours(workspace, dataset_id, epochs)
            plain_s, plain_mb = plain(config, work / f"plain-{epochs}")
            rows[epochs] = (ours_s, ours_mb, plain_s, plain_mb)
            print(f"{epochs} epoch(s): GeoStudio tune {ours_s:7.1f} s ({ours_mb:5.0f} MB)   "
                  f"terratorch fit {plain_s:7.1f} s ({plain_mb:5.0f} MB)", flush=True)
        span = args.epochs - 1
        ours_epoch = (rows[args.epochs][0] - rows[1][0]) / span
        plain_epoch = (rows[args.epochs][2] - rows[1][2]) / span
        print(f"per epoch after start-up: GeoStudio {ours_epoch:.2f} s, terratorch fit {plain_epoch:.2f} s; "
              f"ratio {ours_epoch / plain_epoch:.3f} (overhead {100 * (ours_epoch / plain_epoch - 1):+.1f} %)")
        print(f"peak RSS: GeoStudio {max(rows[1][1], rows[args.epochs][1]):.0f} MB, "
              f"terratorch fit {max(rows[1][3], rows[args.epochs][3]):.0f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
