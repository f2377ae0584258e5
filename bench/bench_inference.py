"""Benchmark: GeoStudio `infer` (streamed, COG outputs) against plain `terratorch predict`, same tuned model.

Run with the engine's Python (`make bench` runs every bench; by hand:
`PYTHONPATH=. HF_HUB_OFFLINE=1 <engine python> bench/bench_inference.py --size 5000`). It builds a
6-band dataset from the bundled Sentinel-2 chip (B2, B3, B4, B8, B11, B12 of its 13 bands, with its three mirror
images and its hand label), onboards it, trains a tiny ResNet-18 UNet for one epoch (both paths load the same
checkpoint), mosaics one SIZE x SIZE x 6 float32 raster from the chip and its mirror images, and predicts it both
ways, each in its own process as a user would run it, with the tune's config_deploy.yaml and its
tiled_inference_parameters. Ours runs ``--runs`` times: the first CPU inference of a tune traces the model and
caches the frozen TorchScript copy in the tune folder, later ones load it and never import TerraTorch
(inference/model_cache.py), so run 1 is a first use and run 2 every later one. It prints each run's wall time,
peak memory (ru_maxrss of the child) and the load average before and after, the speed and memory ratios, and on
how many valid pixels the predictions agree. Both sides run in the one invocation, one after the other, so load
from other jobs hits both. `--skip-terratorch` runs ours only (memory at sizes where terratorch predict takes too
long or runs out of memory); `--workspace DIR` keeps the trained tune (and its cache: delete
DIR/tunes/*/inference_cache to measure a first run again) for the next invocation.
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


S2_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")  # blue, green, red, NIR, SWIR 1, SWIR 2: six of the chip's 13
S2_CHIP = SAMPLES / "S2Hand" / "Spain_7370579_S2Hand.tif"
LABEL = SAMPLES / "train" / "Spain_7370579_LabelHand.tif"
SUFFIX = "_S2Hand6.tif"


def six_band_chip() -> tuple[np.ndarray, dict]:
    """The bundled Sentinel-2 chip's six bands as float32 (bands-first), and its profile."""
    with rasterio.open(S2_CHIP) as src:
        indexes = [src.descriptions.index(b) + 1 for b in S2_BANDS]
        return src.read(indexes).astype("float32"), src.profile.copy()


def six_band_dataset(target: Path) -> Path:
    """Training pairs for a 6-band model: the one bundled Sentinel-2 chip (and its three mirror images, so one
    epoch sees some variety) with its hand label; float32, no nodata (the chip has no empty pixel)."""
    target.mkdir(parents=True)
    chip, profile = six_band_chip()
    with rasterio.open(LABEL) as src:
        label, label_profile = src.read(), src.profile.copy()
    profile.update(count=len(S2_BANDS), dtype="float32", nodata=None)
    for name, flip in (("a", lambda a: a), ("b", lambda a: a[..., ::-1]), ("c", lambda a: a[..., ::-1, :]),
                       ("d", lambda a: a[..., ::-1, ::-1])):
        with rasterio.open(target / f"Spain{name}{SUFFIX}", "w", **profile) as dst:
            dst.write(np.ascontiguousarray(flip(chip)))
            for i, band in enumerate(S2_BANDS, 1):
                dst.set_band_description(i, band)
        with rasterio.open(target / f"Spain{name}_LabelHand.tif", "w", **label_profile) as dst:
            dst.write(np.ascontiguousarray(flip(label)))
    return target


def onboarding_payload(data: Path) -> dict:
    payload = json.loads((REPO / "scripts/demo_payloads/onboard_sen1floods11.json").read_text())
    payload.update(dataset_name="Sen1Floods11 S2 six bands (bench)", dataset_url=str(data))
    payload["onboarding_options"]["chip_size"] = 128
    payload["data_sources"] = [{"connector": "sentinelhub", "collection": "s2_l2a", "modality_tag": "S2L2A",
                                "file_suffix": SUFFIX,
                                "bands": [{"index": str(i), "band_name": b, "scaling_factor": 1}
                                          for i, b in enumerate(S2_BANDS)]}]
    return payload


def mosaic(target: Path, size: int) -> Path:
    """A size x size 6-band float32 raster tiled from the chip and its mirror images (so no hard edge), written
    512 rows at a time."""
    chip, profile = six_band_chip()
    n = chip.shape[1]
    variants = [[chip, chip[..., ::-1]], [chip[..., ::-1, :], chip[..., ::-1, ::-1]]]
    profile.update(width=size, height=size, count=len(S2_BANDS), dtype="float32", nodata=None, tiled=True,
                   blockxsize=256, blockysize=256, compress="DEFLATE", predictor=3, BIGTIFF="IF_SAFER")
    with rasterio.open(target, "w", **profile) as dst:
        for i, band in enumerate(S2_BANDS, 1):
            dst.set_band_description(i, band)
        for row in range(0, size, n):
            h = min(n, size - row)
            strip = np.concatenate([variants[(row // n) % 2][(col // n) % 2][:, :h]
                                    for col in range(0, size, n)], axis=2)[:, :, :size]
            dst.write(np.ascontiguousarray(strip), window=Window(0, row, size, h))
    return target


def trained_tune(workspace: Path, tmp: Path) -> Path:
    """The bench's 6-band tune: found in ``workspace`` when an earlier run (``--workspace``) trained it."""
    tunes = sorted((workspace / "tunes").glob("*/tune.json")) if (workspace / "tunes").is_dir() else []
    for record in tunes:
        tune = json.loads(record.read_text())
        if tune.get("name") == TUNE_NAME and tune.get("status") == "Finished":
            return record.parent
    data = six_band_dataset(tmp / "s2six")
    dataset = engine(workspace, "onboard", onboarding_payload(data))["summary"]["dataset_id"]
    tune = engine(workspace, "tune", {
        "name": TUNE_NAME, "dataset_id": dataset, "base_model_id": "timm_resnet18",
        "tune_template_id": "timm_resnet_seg", "train_options": {"accelerator": "cpu"},
        "model_parameters": {"runner": {"max_epochs": 1}, "data": {"crop_size": 128},
                             "model": {"decode_head": {"channels": 64}}}})
    return Path(tune["outputs"]["tune_dir"])


TUNE_NAME = "bench-s2-six-bands"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def agreement(ours: Path, plain: Path, ids: np.ndarray) -> tuple[int, int]:
    """(pixels where both predictions give one label, valid pixels): terratorch writes class indices."""
    agree = total = 0
    with rasterio.open(ours) as a, rasterio.open(plain) as b:
        for _, window in a.block_windows(1):
            mine, theirs = a.read(1, window=window), b.read(1, window=window)
            valid = mine != a.nodata
            agree += int((mine[valid] == ids[np.clip(theirs[valid], 0, len(ids) - 1)]).sum())
            total += int(valid.sum())
    return agree, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="raster side in pixels (default 2048)")
    parser.add_argument("--skip-terratorch", action="store_true", help="run GeoStudio infer only")
    parser.add_argument("--workspace", type=Path, help="keep the workspace here and reuse its trained tune")
    parser.add_argument("--runs", type=int, default=2,
                        help="GeoStudio infer runs (default 2: the first fills the model cache, the next use it)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geostudio-bench-"))
    try:
        workspace = args.workspace or tmp / "workspace"
        tune_dir = trained_tune(workspace, tmp)
        record = json.loads((tune_dir / "tune.json").read_text())
        scenes = tmp / "scenes"
        scenes.mkdir()
        image = mosaic(scenes / f"mosaic{args.size}{SUFFIX}", args.size)  # the deploy config's img_grep
        print(f"raster: {args.size} x {args.size} x {len(S2_BANDS)} float32 ({', '.join(S2_BANDS)} tiled from the "
              f"bundled Sentinel-2 chip); model {record['base_model_id']} (UNet), TerraTorch tiles "
              f"{record.get('tiled_inference_parameters')}; CPU, {os.cpu_count()} cores")
        print(f"{'path':<44}{'wall s':>8}{'peak RSS MB':>13}   load average before / after")
        spec_file = tmp / "infer.json"
        spec_file.write_text(json.dumps({"fine_tuning_id": record["tune_id"], "device": "cpu",
                                         "spatial_domain": {"urls": [str(image)]}}))
        ours = []
        for n in range(args.runs):
            before = load()
            seconds, peak = timed([sys.executable, "-m", "geostudio_plugin.engine", "--workspace", str(workspace),
                                   "infer", str(spec_file)], tmp)
            run = max((workspace / "inferences").iterdir(), key=lambda p: p.stat().st_mtime)
            timings = json.loads((run / "inference.json").read_text())["timings"]
            ours.append((seconds, peak, run))
            print(f"{f'GeoStudio infer, run {n + 1} (streamed, COG)':<44}{seconds:>8.1f}{peak:>13.0f}   "
                  f"{before} / {load()}   stages {timings}")
        if args.skip_terratorch:
            return
        plain_out = tmp / "terratorch_out"
        terratorch = str(Path(sys.executable).with_name("terratorch"))
        before = load()
        plain_s, plain_mb = timed([terratorch, "predict", "-c", str(tune_dir / "config_deploy.yaml"),
                                   "--ckpt_path", str(tune_dir / record["checkpoint"]),
                                   "--trainer.accelerator", "cpu", "--trainer.precision", "32",
                                   "--data.init_args.predict_data_root", str(scenes),
                                   "--predict_output_dir", str(plain_out)], tmp)
        print(f"{'terratorch predict (CLI)':<44}{plain_s:>8.1f}{plain_mb:>13.0f}   {before} / {load()}")
        ids = np.array([c["id"] for c in record["classes"]])
        for n, (seconds, peak, run) in enumerate(ours):
            agree, total = agreement(run / f"{image.stem}_pred.tif", plain_out / f"{image.stem}_pred.tif", ids)
            print(f"run {n + 1}: speed ratio (terratorch / ours) {plain_s / seconds:.2f}x; memory: ours {peak:.0f} MB, "
                  f"terratorch {plain_mb:.0f} MB ({plain_mb / peak:.2f}x); pixel agreement {agree / total:.4%} of "
                  f"{total} valid pixels")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
