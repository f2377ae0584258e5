"""Benchmark: GeoStudio `infer` (streamed, COG outputs) against plain `terratorch predict`, same tuned model.

Run with the engine's Python (`make bench` runs every bench; by hand:
`PYTHONPATH=. HF_HUB_OFFLINE=1 <engine python> bench/bench_inference.py --size 5000`). It onboards the bundled
Sen1Floods11 chips, trains a tiny ResNet-18 UNet for one epoch (both paths load the same checkpoint), builds
one SIZE x SIZE raster by tiling the seven bundled 512 x 512 Sentinel-1 scenes (the model reads VV and VH, so
the raster has those 2 float32 bands: the bundled data has no 6-band scenes a model trains on here), and predicts it
both ways, each in its own process as a user would run it, with the tune's config_deploy.yaml and its
tiled_inference_parameters. It prints wall time, the ratio, each process's peak memory (ru_maxrss of the
child) and how many valid pixels the two predictions agree on. `--skip-terratorch` runs ours only (for
memory at sizes where terratorch predict takes too long or runs out of memory).
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

import numpy as np
import rasterio
from rasterio.windows import Window

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


def mosaic(target: Path, size: int) -> Path:
    """A size x size 2-band float32 raster tiled from the bundled scenes (written 512 rows at a time)."""
    scenes = sorted(SAMPLES.glob("*/*_S1Hand.tif"))
    chips = [rasterio.open(p).read().astype("float32") for p in scenes]
    with rasterio.open(scenes[0]) as src:
        profile = src.profile.copy()
        transform = src.transform
    profile.update(width=size, height=size, count=2, dtype="float32", tiled=True, blockxsize=256, blockysize=256,
                   compress="DEFLATE", predictor=3, BIGTIFF="IF_SAFER", transform=transform)
    chip = chips[0].shape[1]
    with rasterio.open(target, "w", **profile) as dst:
        dst.set_band_description(1, "VV")
        dst.set_band_description(2, "VH")
        for row in range(0, size, chip):
            h = min(chip, size - row)
            strip = np.concatenate([chips[(row // chip + col // chip) % len(chips)][:, :h]
                                    for col in range(0, size, chip)], axis=2)[:, :, :size]
            dst.write(strip, window=Window(0, row, size, h))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="raster side in pixels (default 2048)")
    parser.add_argument("--skip-terratorch", action="store_true", help="run GeoStudio infer only")
    args = parser.parse_args()
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
        image = mosaic(scenes / f"mosaic{args.size}_S1Hand.tif", args.size)  # the deploy config's img_grep

        spec_file = tmp / "infer.json"
        spec_file.write_text(json.dumps({"fine_tuning_id": record["tune_id"], "device": "cpu",
                                         "spatial_domain": {"urls": [str(image)]}}))
        ours_s, ours_mb = timed([sys.executable, "-m", "geostudio_plugin.engine", "--workspace", str(workspace),
                                 "infer", str(spec_file)], tmp)
        run = max((workspace / "inferences").iterdir(), key=lambda p: p.stat().st_mtime)
        timings = json.loads((run / "inference.json").read_text())["timings"]
        print(f"raster: {args.size} x {args.size} x 2 float32 (VV, VH tiled from the bundled Sentinel-1 scenes); "
              f"model {record['base_model_id']}, tiles {record.get('tiled_inference_parameters')}; CPU, "
              f"{os.cpu_count()} cores")
        print(f"{'path':<34}{'wall s':>8}{'peak RSS MB':>13}")
        print(f"{'GeoStudio infer (streamed, COG)':<34}{ours_s:>8.1f}{ours_mb:>13.0f}   stages {timings}")
        if args.skip_terratorch:
            return
        plain_out = tmp / "terratorch_out"
        terratorch = str(Path(sys.executable).with_name("terratorch"))
        plain_s, plain_mb = timed([terratorch, "predict", "-c", str(tune_dir / "config_deploy.yaml"),
                                   "--ckpt_path", str(tune_dir / record["checkpoint"]),
                                   "--trainer.accelerator", "cpu", "--trainer.precision", "32",
                                   "--data.init_args.predict_data_root", str(scenes),
                                   "--predict_output_dir", str(plain_out)], tmp)
        ids = np.array([c["id"] for c in record["classes"]])
        with rasterio.open(run / f"{image.stem}_pred.tif") as a, rasterio.open(plain_out / f"{image.stem}_pred.tif") as b:
            agree = total = 0
            for _, window in a.block_windows(1):
                ours, plain = a.read(1, window=window), b.read(1, window=window)
                valid = ours != a.nodata
                agree += int((ours[valid] == ids[np.clip(plain[valid], 0, len(ids) - 1)]).sum())
                total += int(valid.sum())
        print(f"{'terratorch predict (CLI)':<34}{plain_s:>8.1f}{plain_mb:>13.0f}")
        print(f"speed ratio (terratorch / ours): {plain_s / ours_s:.2f}x; "
              f"memory ratio: {plain_mb / ours_mb:.2f}x; pixel agreement: {agree / total:.4%} of {total} valid pixels")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
