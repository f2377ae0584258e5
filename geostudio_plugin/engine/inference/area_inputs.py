"""The area + dates stage of ``infer``: plan and check before the model loads, fetch the model's input into the
run folder, and after prediction write the masked outputs and the per-date record.

``AreaStage.prepare`` (no download): the model's input data (``model_input_sources``), the area limit, dates
(none in the future), availability (``no_data`` naming the nearest dates, ``area_outside_coverage``) and the
sub-boxes. ``fetch`` writes, per sub-box and date, ``<inference_id>_<modality_tag>_<date>[_part<k>]<file_suffix>``
(the Studio's naming): the model's bands at their ``index`` positions (other positions nodata, so the tune's
band positions read them), scaled by the catalogue (DN to physical units) and then by each band's
``scaling_factor``; and ``<stem>_rgb.tif``, the bands tagged ``RGB_band`` stretched to uint8 (2-98 %).
The collection's mask band (SCL, Fmask) is fetched in the same request when a mask is asked for.
``finish`` writes ``<stem>_masked.tif`` per prediction and returns the run record's ``dates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import protocol
from ..protocol import EngineError
from ..workspace import Workspace
from .availability import check, model_input_sources, refuse_missing, resolution_m
from .masks import CLOUD, PERMANENT_WATER, SNOW_ICE, mask_band, write_masked
from .plan import check_area, parse_dates, plan_boxes
from .spec import InferSpec

NODATA = -9999.0


@dataclass
class FetchedInput:
    path: Path  # in the stage folder
    date: str
    request: str
    box: list[float]
    part: int
    scenes: list[dict[str, Any]]
    rgb: Optional[Path] = None
    mask: Optional[np.ndarray] = None  # the collection's mask band on the input's grid (float, NODATA invalid)


@dataclass
class AreaStage:
    spec: InferSpec
    workspace: Workspace
    source: Any  # the model's one DataSource
    boxes: list[list[float]]
    entries: list[dict[str, Any]]  # availability per date request
    area_sq_km: float
    masks: list[str]
    mask_source: Optional[tuple[str, str]]  # (band, encoding)
    inputs: list[FetchedInput] = field(default_factory=list)

    @classmethod
    def prepare(cls, spec: InferSpec, workspace: Workspace, record: dict[str, Any]) -> "AreaStage":
        """Everything that can refuse the request, before the model loads and before any download."""
        sources = model_input_sources(record, workspace, spec.model_input_data_spec)
        if len(sources) > 1:
            raise EngineError("area_multimodal_not_supported", f"Tune {record['tune_id']} takes "
                              f"{len(sources)} modalities ({', '.join(s.modality_tag for s in sources)}); inference "
                              "over an area runs single-modality models.",
                              "Fetch each modality (Connectors dock or `fetch`), or use a single-modality model.")
        areas = spec.spatial_domain.areas()
        area = check_area(areas, spec.max_area_sq_km)
        requests = parse_dates(spec.temporal_domain)
        protocol.progress("availability", 0.01, f"checking {len(requests)} date(s) over {area:,.2f} km²")
        entries = check(sources, areas, requests, spec.maxcc, dict(spec.endpoints), workspace, spec.temporal_each)
        refuse_missing(entries, spec.maxcc)
        resolution = resolution_m(sources[0], workspace)
        boxes = [sub for box in areas for sub in plan_boxes(box, resolution)]
        masks = spec.masks()
        mask_source = None
        if masks:
            from ..connectors import access

            mask_source = mask_band(access.collection(sources[0].connector, sources[0].collection, workspace, None))
            if mask_source is None:
                protocol.log(f"post_processing asks for {', '.join(masks)} masking, but {sources[0].connector} / "
                             f"{sources[0].collection} has no mask band GeoStudio reads: no masked output.", "warning")
        return cls(spec, workspace, sources[0], boxes, entries, area, masks, mask_source)

    def file_name(self, inference_id: str, day: str, part: int) -> str:
        suffix = self.source.file_suffix
        suffix = suffix if suffix.lower().endswith((".tif", ".tiff")) else suffix + ".tif"
        if not suffix.startswith((".", "_")):
            suffix = "_" + suffix
        parts = f"_part{part}" if len(self.boxes) > 1 else ""
        return f"{inference_id}_{self.source.modality_tag}_{day}{parts}{suffix}"

    def fetch(self, stage: Path, inference_id: str) -> list[str]:
        """Fetch every sub-box x date into ``stage``; returns the input files to predict, in order."""
        from ..connectors.fetch import fetch_day
        from ..connectors.session import open_collection
        from ..rasters import write_geotiff

        source = self.source
        names = [b.band_name for b in source.bands]
        extra = [self.mask_source[0]] if self.mask_source else []
        session = open_collection(source.connector, source.collection, self.spec.endpoints.get(source.connector),
                                  self.workspace, bands=names + extra,
                                  announce=lambda message: protocol.progress("fetch", 0.02, message))
        scales = np.asarray(source.band_scales(), dtype="float32")[:, None, None]
        width = max(b.index for b in source.bands) + 1
        jobs = [(e, k, box) for e in self.entries for k, box in enumerate(self.boxes, start=1)]
        for n, (entry, part, box) in enumerate(jobs):
            day = entry["date"]
            protocol.progress("fetch", 0.02 + 0.03 * n / len(jobs), f"{session.name} {day} ({n + 1}/{len(jobs)})")
            data, transform, crs, _, _, _ = fetch_day(session, date.fromisoformat(day), box, self.spec.maxcc)
            bands, mask = data[:len(names)], (data[len(names)] if extra else None)
            valid = bands != NODATA
            layout = np.full((width, *bands.shape[1:]), NODATA, dtype="float32")
            descriptions: list[Optional[str]] = [None] * width
            for i, band in enumerate(source.bands):
                layout[band.index] = np.where(valid[i], bands[i] * scales[i], NODATA)
                descriptions[band.index] = band.band_name
            path = stage / self.file_name(inference_id, day, part)
            profile = {"crs": crs, "transform": transform, "nodata": NODATA, "driver": "GTiff"}
            write_geotiff(path, layout, profile, descriptions=descriptions)
            scenes = entry["modalities"][source.modality_tag]["scenes"]
            item = FetchedInput(path, day, entry["request"], list(box), part, scenes, mask=mask)
            item.rgb = self._write_rgb(path, layout, profile)
            self.inputs.append(item)
        return [str(i.path) for i in self.inputs]

    def _write_rgb(self, path: Path, layout: np.ndarray, profile: dict[str, Any]) -> Optional[Path]:
        """``<stem>_rgb.tif``: the R, G, B bands stretched to uint8 (2nd-98th percentile; 0 = nodata)."""
        from ..rasters import write_geotiff

        roles = {b.RGB_band: b.index for b in self.source.bands if b.RGB_band}
        if not all(c in roles for c in "RGB"):
            return None
        rgb = np.zeros((3, *layout.shape[1:]), dtype="uint8")
        for i, c in enumerate("RGB"):
            band = layout[roles[c]]
            ok = band != NODATA
            if ok.any():
                low, high = np.percentile(band[ok], [2, 98])
                scaled = np.clip((band - low) / max(high - low, 1e-12) * 254 + 1, 1, 255)
                rgb[i] = np.where(ok, scaled, 0).astype("uint8")
        out = path.with_name(f"{path.stem}_rgb.tif")
        write_geotiff(out, rgb, {**profile, "nodata": 0}, descriptions=["red", "green", "blue"])
        return out

    def _layers(self, dates: list[dict[str, Any]], layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def label(entry: dict[str, Any]) -> str:
            return f"{entry['date']}" + (f" part {entry['part']}" if len(self.boxes) > 1 else "")

        rgb_style = {"rgb": [{"label": f"{c}Channel", "channel": n, "minValue": 0, "maxValue": 255}
                             for n, c in enumerate(("Red", "Green", "Blue"), start=1)]}
        masked_style = None
        style = next((lay.get("geoserver_style") for lay in layers  # the prediction's (not the confidence's)
                      if lay.get("filepath_key") == "model_output_image" and lay.get("geoserver_style")), None)
        if isinstance(style, dict) and isinstance(style.get("segmentation"), list):
            masked_style = {"segmentation": list(style["segmentation"]) + [
                {"color": "#ffffff", "label": "cloud", "opacity": 1, "quantity": str(CLOUD)},
                {"color": "#b8e3ff", "label": "snow / ice", "opacity": 1, "quantity": str(SNOW_ICE)},
                {"color": "#08306b", "label": "permanent water", "opacity": 1, "quantity": str(PERMANENT_WATER)}]}
        extra = []
        for entry in dates:
            if entry["rgb"]:
                extra.append({"display_name": f"Input image (RGB): {label(entry)}", "path": entry["rgb"],
                              "filepath_key": "model_input_original_image_rgb", "z_index": 0,
                              "visible_by_default": True, "geoserver_style": rgb_style})
            if entry["masked"]:
                extra.append({"display_name": f"Model prediction (masked): {label(entry)}", "path": entry["masked"],
                              "filepath_key": "model_output_image_masked", "z_index": 2,
                              "visible_by_default": True, "geoserver_style": masked_style})
        return list(layers) + extra

    def finish(self, stage: Path, final: Path, outputs: list[dict[str, Any]],
               layers: list[dict[str, Any]]) -> dict[str, Any]:
        """Masked outputs beside the predictions; the run record's area fields (``dates`` per sub-box x date) and
        its ``layers`` with the input composites (z 0) and masked predictions (z 2) added, as the Studio pushes
        ``input_rgb`` and ``model_output_image_masked``."""
        dates = []
        for item, output in zip(self.inputs, outputs):
            prediction = stage / Path(output["prediction"]).name
            output["input"] = str(final / item.path.name)
            entry: dict[str, Any] = {
                "date": item.date, "request": item.request, "bbox": item.box, "part": item.part,
                "scenes": item.scenes,
                "inputs": {self.source.modality_tag: str(final / item.path.name)},
                "rgb": str(final / item.rgb.name) if item.rgb else None,
                "prediction": output["prediction"], "masked": None, "masks": {},
            }
            if self.mask_source and item.mask is not None:
                valid = item.mask != NODATA
                path, counts = write_masked(prediction, item.mask, valid, self.mask_source[1], self.masks)
                entry["masked"], entry["masks"] = str(final / path.name), counts
            dates.append(entry)
        return {"dates": dates, "layers": self._layers(dates, layers), "area_sq_km": round(self.area_sq_km, 3), "maxcc": self.spec.maxcc,
                "model_input_data_spec": [self.source.model_dump()], "post_processing": self.spec.post_processing,
                "availability": self.entries}
