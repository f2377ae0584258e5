"""Benchmark: GeoStudio `infer` against plain `terratorch predict`, same tuned model, same scenes.

Run with the engine's Python (`make bench`). It onboards the bundled Sen1Floods11 chips, trains a tiny
ResNet-18 UNet for one epoch (both paths then load the same checkpoint), and predicts the seven 512x512
Sentinel-1 scenes (the six training scenes and the held-out one) both ways, each in its own process, as a
user would run them. It prints wall time, the ratio, each process's peak memory (RSS) and how many pixels
the two predictions agree on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def engine(workspace: Path, command: str, spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "geostudio_plugin.engine", "--workspace", str(workspace), command,
                           "-"], input=json.dumps(spec), capture_output=True, text=True, env=ENV, check=False)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    result = next((e for e in events if e["event"] == "result"), None)
    if proc.returncode or result is None:
        sys.exit(f"{command} failed ({proc.returncode}): {events[-1] if events else proc.stderr[-2000:]}")
    return result


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    launcher = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc)")
    out = subprocess.run([sys.executable, "-c", launcher, *cmd], capture_output=True, text=True, env=ENV,
                         check=True, cwd=cwd).stdout.split()  # terratorch predict writes its config to cwd
    seconds, peak_mb, rc = float(out[0]), float(out[1]), int(out[2])
    if rc:
        sys.exit(f"benchmark command failed ({rc}): {' '.join(cmd)}")
    return seconds, peak_mb


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="geostudio-bench-"))
    try:
        workspace = tmp / "workspace"
        payload = json.loads((REPO / "scripts/demo_payloads/onboard_sen1floods11.json").read_text())
        payload["dataset_url"] = str(SAMPLES / "train")
        dataset = engine(workspace, "onboard", payload)["summary"]["dataset_id"]
        tune = engine(workspace, "tune", {
            "name": "bench", "dataset_id": dataset, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "train_options": {"accelerator": "cpu"},
            "model_parameters": {"runner": {"max_epochs": 1}, "data": {"crop_size": 128},
                                 "model": {"decode_head": {"channels": 64}}}})
        tune_dir = Path(tune["outputs"]["tune_dir"])
        record = json.loads((tune_dir / "tune.json").read_text())
        scenes = tmp / "scenes"
        scenes.mkdir()
        for path in sorted(SAMPLES.glob("*/*_S1Hand.tif")):
            shutil.copy(path, scenes / path.name)
        inputs = sorted(scenes.glob("*.tif"))
        pixels = sum(rasterio.open(p).width * rasterio.open(p).height for p in inputs)

        spec_file = tmp / "infer.json"
        spec_file.write_text(json.dumps({"fine_tuning_id": record["tune_id"], "device": "cpu",
                                         "spatial_domain": {"urls": [str(p) for p in inputs]}}))
        ours_s, ours_mb = timed([sys.executable, "-m", "geostudio_plugin.engine", "--workspace", str(workspace),
                                 "infer", str(spec_file)], tmp)
        run = max((workspace / "inferences").iterdir(), key=lambda p: p.stat().st_mtime)

        plain_out = tmp / "terratorch_out"
        terratorch = str(Path(sys.executable).with_name("terratorch"))
        plain_s, plain_mb = timed([terratorch, "predict", "-c", str(tune_dir / "config_deploy.yaml"),
                                   "--ckpt_path", str(tune_dir / record["checkpoint"]),
                                   "--trainer.accelerator", "cpu", "--trainer.precision", "32",
                                   "--data.init_args.predict_data_root", str(scenes),
                                   "--predict_output_dir", str(plain_out)], tmp)

        agree = total = 0
        ids = np.array([c["id"] for c in record["classes"]])
        for path in inputs:
            ours = rasterio.open(run / f"{path.stem}_pred.tif").read(1)
            plain = rasterio.open(plain_out / f"{path.stem}_pred.tif").read(1)
            valid = ours != -9999
            agree += int((ours[valid] == ids[np.clip(plain[valid], 0, len(ids) - 1)]).sum())
            total += int(valid.sum())

        print(f"scenes: {len(inputs)} Sentinel-1 chips, {pixels / 1e6:.2f} Mpx; model {record['base_model_id']}; CPU")
        print(f"{'path':<34}{'wall s':>8}{'peak RSS MB':>13}")
        print(f"{'GeoStudio infer':<34}{ours_s:>8.1f}{ours_mb:>13.0f}")
        print(f"{'terratorch predict (CLI)':<34}{plain_s:>8.1f}{plain_mb:>13.0f}")
        print(f"speed ratio (terratorch / ours): {plain_s / ours_s:.2f}x; "
              f"memory ratio: {plain_mb / ours_mb:.2f}x; pixel agreement: {agree / total:.4%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
