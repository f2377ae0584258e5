"""Benchmark: how long one small inference takes end to end from the plugin's job API, with and without the
warm engine.

`python3 bench/bench_latency.py` from the repository root once the engine environment exists (`make bench`
runs it too). It finds the engine's Python as the plugin does (engine_runtime.resolve_engine_python;
GEOSTUDIO_ENGINE_PYTHON overrides), onboards the bundled Sen1Floods11 chips and trains a tiny ResNet-18 once
(kept in the user data folder's bench/latency workspace and reused on the next run), then predicts one
512 x 512 chip three ways through ``EngineJob``, the API the docks, Processing and the demo use:

* process-per-job: the job as its own process (the path without a warm engine), imports included;
* warm first: the warm engine is started for this job (the imports are paid once, here);
* warm second: the same job again, forked from the warm engine.

It ends with one line: ``latency: process-per-job X.X s, warm first Y.Y s, warm second Z.Z s``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geostudio_plugin import engine_runtime, engine_server_client  # noqa: E402 - after the path is set
from geostudio_plugin.engine_client import EngineJob, JobOutcome  # noqa: E402

SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
CHIP = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"


def run(python: Path, workspace: Path, command: str, spec: dict, warm: bool) -> JobOutcome:
    outcome = EngineJob(command, spec, python=python, workspace=workspace, warm=warm).run()
    if not outcome.ok:
        failure = outcome.failure()
        sys.exit(f"{command} failed: {failure.message}\n{failure.details[-2000:]}")
    return outcome


def tiny_model(python: Path, workspace: Path) -> str:
    """The tune id of the bench's tiny model, trained the first time."""
    tunes = sorted((workspace / "tunes").glob("*/tune.json")) if (workspace / "tunes").is_dir() else []
    for record_file in tunes:
        record = json.loads(record_file.read_text())
        if record.get("status") == "Finished" and record.get("name") == "latency-bench":
            return record["tune_id"]
    payload = json.loads((REPO / "scripts/demo_payloads/onboard_sen1floods11.json").read_text())
    payload["dataset_url"] = str(SAMPLES / "train")
    print("training the bench's tiny model (once; kept in the bench workspace)", file=sys.stderr, flush=True)
    dataset = run(python, workspace, "onboard", payload, warm=False).result["summary"]["dataset_id"]
    tune = run(python, workspace, "tune", {
        "name": "latency-bench", "dataset_id": dataset, "base_model_id": "timm_resnet18",
        "tune_template_id": "timm_resnet_seg", "train_options": {"accelerator": "cpu"},
        "model_parameters": {"runner": {"max_epochs": 1}, "data": {"batch_size": 4, "crop_size": 64},
                             "model": {"decode_head": {"channels": 32}}}}, warm=False)
    return json.loads((Path(tune.result["outputs"]["tune_dir"]) / "tune.json").read_text())["tune_id"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=engine_runtime.user_data_dir() / "bench" / "latency",
                        help="where the tiny model is kept between runs")
    args, _others = parser.parse_known_args()  # bench/run_all.py passes every bench the same arguments
    python = engine_runtime.resolve_engine_python(os.environ.get("GEOSTUDIO_ENGINE_PYTHON", ""))
    if python is None:
        sys.exit("The engine environment is not built: `make engine` (or scripts/engine) first.")
    if not engine_server_client.supported():
        sys.exit("The warm engine needs Linux (fork); this platform runs every job as its own process.")
    tune_id = tiny_model(python, args.workspace)
    spec = {"fine_tuning_id": tune_id, "device": "cpu", "spatial_domain": {"urls": [str(CHIP)]}}
    engine_server_client.stop()
    seconds = {}
    for label, warm in (("process-per-job", False), ("warm first", True), ("warm second", True)):
        outcome = run(python, args.workspace, "infer", spec, warm=warm)
        seconds[label] = outcome.seconds
        record = Path(outcome.result["outputs"]["inference_dir"]) / "inference.json"
        timings = json.loads(record.read_text()).get("timings", {})
        cpu = f", job CPU {outcome.cpu_seconds:.2f} s" if outcome.cpu_seconds is not None else ""
        print(f"{label:<16} {outcome.seconds:6.2f} s end to end; inside the command: "
              + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()) + cpu, flush=True)
    process, first, second = seconds["process-per-job"], seconds["warm first"], seconds["warm second"]
    server = engine_server_client.current()
    if server is not None:
        info = server.status()
        print(f"warm engine: pid {info['pid']}, {info['rss_kb'] / 1024:.0f} MB resident, "
              f"{info['jobs_served']} jobs served; {os.cpu_count()} CPU cores, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    engine_server_client.stop()
    print(f"latency: process-per-job {process:.1f} s, warm first {first:.1f} s, warm second {second:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
