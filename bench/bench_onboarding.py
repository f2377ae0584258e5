"""Benchmark: GeoStudio onboarding against the Studio's approach, same run, same data.

Data: N pairs (default 1,000) of 6-band 512x512 chips: the six HLS bands (B2, B3, B4, B8A, B11, B12) of
the bundled real Sen1Floods11 Sentinel-2 chip with its hand label, written under N names.

- GeoStudio: `python -m geostudio_plugin.engine onboard` (one process: pairing, split, streamed statistics,
  COG writing on a few threads).
- Studio (core:pipelines/components/curated_upload): every training image loaded into memory for the
  statistics (values <= -9999 as NaN), then `rio cogeo create --cog-profile lzw` once per file.

Prints both wall times, the ratio and each side's peak memory (RSS). Usage:
  python bench/bench_onboarding.py [--pairs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parents[1]
S1F = REPO / "resources" / "sample_data" / "sen1floods11"
HLS = [2, 3, 4, 9, 12, 13]  # 1-based Sentinel-2 L1C bands -> Blue, Green, Red, NIR_Narrow, SWIR1, SWIR2
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def make_data(folder: Path, pairs: int) -> None:
    folder.mkdir(parents=True)
    with rasterio.open(S1F / "S2Hand" / "Spain_7370579_S2Hand.tif") as src:
        profile = src.profile | {"count": 6, "compress": "DEFLATE", "tiled": True, "blockxsize": 256, "blockysize": 256}
        data = src.read(HLS)
    first_image = folder / "chip_00000_merged.tif"
    with rasterio.open(first_image, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(["Blue", "Green", "Red", "NIR_Narrow", "SWIR1", "SWIR2"], start=1):
            dst.set_band_description(i, name)
    first_label = folder / "chip_00000.mask.tif"
    shutil.copyfile(S1F / "train" / "Spain_7370579_LabelHand.tif", first_label)
    for n in range(1, pairs):
        shutil.copyfile(first_image, folder / f"chip_{n:05d}_merged.tif")
        shutil.copyfile(first_label, folder / f"chip_{n:05d}.mask.tif")


def payload(folder: Path) -> dict:
    return {"dataset_name": "bench", "dataset_url": str(folder), "label_suffix": ".mask.tif",
            "purpose": "Segmentation", "data_sources": [{
                "connector": "sentinelhub", "collection": "hls_l30", "modality_tag": "HLS_L30",
                "file_suffix": "_merged.tif", "bands": [{"index": i, "band_name": n} for i, n in enumerate(
                    ["Blue", "Green", "Red", "NIR_Narrow", "SWIR1", "SWIR2"])]}],
            "label_categories": [{"id": 0, "name": "Not water"}, {"id": 1, "name": "Water"}]}


def child_peak_mb(before: int) -> float:
    return max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024


def ours(folder: Path, workspace: Path) -> tuple[float, float]:
    spec = workspace.parent / "onboard.json"
    spec.write_text(json.dumps(payload(folder)))
    launcher = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc)")
    out = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "geostudio_plugin.engine",
                          "--workspace", str(workspace), "onboard", str(spec)], capture_output=True, text=True,
                         env=ENV, check=True).stdout.split()
    if int(out[2]) != 0:
        sys.exit("GeoStudio onboarding failed")
    return float(out[0]), float(out[1])


def studio(folder: Path, out: Path) -> tuple[float, float, float]:
    """The Studio pipeline's two steps, measured in a child process so its memory is its own."""
    script = r'''
import glob, os, random, resource, subprocess, sys, time
import numpy as np, rasterio
folder, out = sys.argv[1], sys.argv[2]
started = time.perf_counter()
images = sorted(glob.glob(os.path.join(folder, "*_merged.tif")))
stems = [os.path.basename(p)[: -len("_merged.tif")] for p in images]
random.Random(0).shuffle(stems)
train = sorted(stems[: int(len(stems) * 0.6)])
stack = np.stack([rasterio.open(os.path.join(folder, s + "_merged.tif")).read().astype("float32") for s in train])
stack[stack <= -9999] = np.nan
means = np.nanmean(stack, axis=(0, 2, 3)); stds = np.nanstd(stack, axis=(0, 2, 3))
stats_s = time.perf_counter() - started
del stack
rio = os.path.join(os.path.dirname(sys.executable), "rio")
for path in sorted(glob.glob(os.path.join(folder, "*.tif"))):
    subprocess.run([rio, "cogeo", "create", path, os.path.join(out, os.path.basename(path)), "--cog-profile", "lzw",
                    "--quiet"], check=True)
print(time.perf_counter() - started, stats_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
'''
    out.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", script, str(folder), str(out)], capture_output=True, text=True,
                            env=ENV, check=True).stdout.split()
    return float(result[0]), float(result[1]), float(result[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--skip-studio", action="store_true", help="measure GeoStudio only (the Studio side is slow)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="geostudio-bench-onboard-"))
    try:
        data = work / "data"
        started = time.perf_counter()
        make_data(data, args.pairs)
        size_mb = sum(p.stat().st_size for p in data.iterdir()) / 1e6
        print(f"data: {args.pairs} pairs of 6-band 512x512 chips ({size_mb:.0f} MB), made in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        ours_s, ours_mb = ours(data, work / "workspace")
        print(f"GeoStudio onboard : {ours_s:8.1f} s   peak RSS {ours_mb:7.0f} MB", flush=True)
        if args.skip_studio:
            return
        studio_s, stats_s, studio_mb = studio(data, work / "studio_cogs")
        print(f"Studio approach   : {studio_s:8.1f} s   peak RSS {studio_mb:7.0f} MB   "
              f"(statistics {stats_s:.1f} s, then rio cogeo per file)")
        print(f"speed-up: {studio_s / ours_s:.1f}x; memory: {studio_mb / ours_mb:.1f}x less")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
