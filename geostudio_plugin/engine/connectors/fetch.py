"""``fetch``: bands of a collection for an area, one Cloud-Optimized GeoTIFF per date.

Each date is fetched on its own (Terrakit 0.2.2's multi-date get_data mosaics the whole range into
every date). Values are scaled to physical units as the catalogue documents them (STAC raster:bands
scale/offset, or the collection's scale factors), nodata is -9999, band descriptions name the bands.
Files are built in the workspace's staging folder and appear only when every date is complete.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Optional

import numpy as np

from .. import protocol
from ..protocol import EngineError
from ..rasters import write_geotiff
from ..workspace import Workspace
from .failures import classify
from .search import nearest_dates
from .session import open_collection
from .spec import FetchSpec, SearchSpec

NODATA = -9999.0


def band_scaling(connector_id: str, connector: Any, coll: dict[str, Any], bands: list[str], day: date,
                 bbox: list[float]) -> tuple[list[float], list[float], list[Optional[float]]]:
    """(scales, offsets, source nodata) per band, from the catalogue's own documentation."""
    scales, offsets, nodata = [1.0] * len(bands), [0.0] * len(bands), [None] * len(bands)
    if connector_id == "sentinel_aws":
        import pystac_client

        items = list(pystac_client.Client.open(connector.stac_url).search(
            collections=[coll["collection"]], bbox=bbox, datetime=f"{day.isoformat()}/{day.isoformat()}",
            limit=10).items())
        if items:
            for i, band in enumerate(bands):
                asset = items[0].assets.get(band)
                raster = (asset.extra_fields.get("raster:bands") or [{}])[0] if asset else {}
                scales[i] = float(raster.get("scale", 1.0))
                offsets[i] = float(raster.get("offset", 0.0))
                nodata[i] = raster.get("nodata")
            differing = {(tuple((it.assets[b].extra_fields.get("raster:bands") or [{}])[0].get(k) for b in bands
                                if b in it.assets)) for it in items for k in ("scale", "offset")}
            if len(differing) > 2:
                protocol.log(f"{day}: scenes with different scale/offset are mosaicked; the first scene's are used",
                             "warning")
        return scales, offsets, nodata
    by_name = {b["band_name"]: b for b in coll["bands"]}
    for i, band in enumerate(bands):
        scales[i] = float(by_name.get(band, {}).get("scale_factor", 1.0))
    return scales, offsets, nodata


def _rgb_positions(bands: list[str], roles: dict[str, Optional[str]]) -> Optional[list[int]]:
    """1-based positions of the R, G and B bands in the file, when all three were fetched."""
    positions = [next((i + 1 for i, b in enumerate(bands) if roles.get(b) == c), None) for c in "RGB"]
    return positions if None not in positions else None


def to_grid(data_array: Any) -> tuple[np.ndarray, Any, Any]:
    """(bands, rows, cols) float64 array, affine transform and CRS of a Terrakit DataArray."""
    from affine import Affine

    da = data_array
    time_dims = [d for d in da.dims if "time" in str(d).lower()]
    for dim in time_dims:
        da = da.isel({dim: 0})
    y_dim, x_dim = da.dims[-2], da.dims[-1]
    band_dims = [d for d in da.dims if d not in (y_dim, x_dim)]
    if not band_dims:
        da = da.expand_dims("band")
        band_dims = ["band"]
    da = da.transpose(band_dims[0], y_dim, x_dim)
    if da.attrs.get("transform") is not None and da.attrs.get("crs"):  # stackstac: coordinates are top-left
        transform = Affine(*list(da.attrs["transform"])[:6])
        crs = da.attrs["crs"]
    else:  # rioxarray: coordinates are pixel centres
        transform, crs = da.rio.transform(), da.rio.crs
    return np.asarray(da.values, dtype="float64"), transform, crs


def _day_window(connector_id: str, day: date) -> tuple[str, str]:
    if connector_id == "IBMResearchSTAC":  # exclusive end, start < end required
        return day.isoformat(), (day + timedelta(days=1)).isoformat()
    return day.isoformat(), day.isoformat()


def fetch_day(session: Any, day: date, bbox: list[float], maxcc: float
              ) -> tuple[np.ndarray, Any, Any, list[float], list[float], float]:
    """One date's mosaic of the session's bands over ``bbox``, scaled to physical units, nodata ``NODATA``:
    (bands x rows x cols float32, transform, CRS, scales, offsets, valid fraction). ``no_data`` (naming the
    nearest dates) when the connector has no scene, or the scene no valid pixel in the area."""
    connector, name, bands, coll = session.connector, session.name, session.bands, session.collection
    start, end = _day_window(session.connector_id, day)

    def get(start: str = start, end: str = end) -> Any:
        data = connector.get_data(name, start, end, bbox=list(bbox), bands=list(bands), maxcc=maxcc)
        return data.load() if hasattr(data, "load") else data  # lazy (NetCDF over http): read it here

    with session.errors(f"fetching {name} for {day}"):
        try:
            data_array = session.retrying(get, prefix=f"{day}: ")
        except Exception as exc:  # noqa: BLE001
            if classify(exc) != "nodata":
                raise
            near = nearest_dates(connector, SearchSpec(connector=session.connector_id, collection=name,
                                                       bbox=bbox, date_start=day, date_end=day, maxcc=maxcc), name)
            raise EngineError("no_data", f"{session.title}: no {name} scene on {day} over the area"
                              f"{f' below {maxcc:g}% cloud' if maxcc < 100 else ''}.",
                              "Nearest dates with data: " + (", ".join(near) or "none within 120 days")
                              + ".") from None
        scales, offsets, source_nodata = band_scaling(session.connector_id, connector, coll, bands, day, bbox)
    raw, transform, crs = to_grid(data_array)
    valid = np.isfinite(raw)
    for i, nodata in enumerate(source_nodata):
        if nodata is not None:
            valid[i] &= raw[i] != nodata
    scaled = raw * np.asarray(scales)[:, None, None] + np.asarray(offsets)[:, None, None]
    out = np.where(valid, scaled, NODATA).astype("float32")
    if not valid.any():
        raise EngineError("no_data", f"{session.title}: the {day} scene has no valid pixel inside the area.",
                          "Check the area against the scene footprints (Check availability).")
    return out, transform, crs, scales, offsets, round(float(valid.mean()), 4)


def fetch(spec: FetchSpec, workspace: Workspace) -> dict[str, Any]:
    session = open_collection(spec.connector, spec.collection, spec.endpoint, workspace, bands=spec.bands,
                              announce=lambda message: protocol.progress("fetch", 0.05, message))
    name, bands, coll = session.name, session.bands, session.collection
    rgb_roles = {b["band_name"]: b.get("RGB_band") for b in coll["bands"]}
    days = sorted(set(spec.dates))
    fetch_id = workspace.new_id("fetched", f"{spec.connector}-{name}")
    outputs = []
    with workspace.staging("fetched", fetch_id) as stage:
        for n, day in enumerate(days):
            share = 0.9 / len(days)
            protocol.progress("fetch", 0.05 + n * share, f"{name} {day}: {', '.join(bands)}")
            out, transform, crs, scales, offsets, valid_fraction = fetch_day(session, day, spec.bbox, spec.maxcc)
            path = stage / f"{spec.connector}_{name}_{day.isoformat()}.tif"
            profile = {"crs": crs, "transform": transform, "nodata": NODATA}
            write_geotiff(path, out, profile, cog=True, descriptions=list(bands))
            outputs.append({
                "date": day.isoformat(),
                "path": str(workspace.dir("fetched") / fetch_id / path.name),
                "bands": bands, "width": out.shape[2], "height": out.shape[1],
                "scales": scales, "offsets": offsets, "valid_fraction": valid_fraction,
                "rgb": _rgb_positions(bands, rgb_roles),
            })
    protocol.progress("fetch", 1.0, f"{len(outputs)} file(s) written")
    return {"fetch_id": fetch_id, "connector": spec.connector, "collection": name, "bbox": spec.bbox,
            "files": outputs}


def run(spec: FetchSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = fetch(spec, workspace)
    return {"fetch_dir": str(workspace.dir("fetched") / summary["fetch_id"]),
            "files": [f["path"] for f in summary["files"]]}, summary
