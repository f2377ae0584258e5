"""Build the test catalogue from the bundled MARIDA Sentinel-2 patches (run with the engine's Python).

python tests/support/stac_data.py OUT_DIR ASSET_BASE_URL

Writes, under OUT_DIR:
  assets/sentinel-cogs/.../<item id>/<BAND>.tif   per-band COGs, uint16 DN with L2A baseline 04.00 scaling
                                                  (reflectance = DN * 0.0001 - 0.1), nodata 0; 10 m bands at
                                                  10 m, 20 m bands averaged to 20 m, as Earth Search serves them
  assets/sentinel-cogs/.../<item id>/SCL.tif      a scene classification (uint8, 20 m) derived from MARIDA's own
                                                  annotations (see scl_from_annotations)
  assets/ibm/<collection>/<item id>.nc            NDVI datacubes (NetCDF4) for IBM Research STAC
  stac/sentinel-2-l2a.json + .ndjson              collection and items (Earth Search v1 layout)
  stac/marida-ndvi.json + .ndjson                 collection and items with cube:dimensions / cube:variables
  truth.json                                      what the tests compare fetched pixels with
The reflectances are MARIDA's own; the DN coding is the inverse of the documented L2A scaling.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_bounds

REPO = Path(__file__).resolve().parents[2]
MARIDA = REPO / "resources" / "sample_data" / "marida"

# MARIDA band order -> Earth Search asset key, native resolution (m)
BANDS = [("B01", "coastal", 20), ("B02", "blue", 10), ("B03", "green", 10), ("B04", "red", 10),
         ("B05", "rededge1", 20), ("B06", "rededge2", 20), ("B07", "rededge3", 20), ("B08", "nir", 10),
         ("B8A", "nir08", 20), ("B11", "swir16", 20), ("B12", "swir22", 20)]
SCALE, OFFSET = 0.0001, -0.1
TIMES = {"16PCC": "16:05:42", "16PDC": "16:05:39"}


def patches() -> list[Path]:
    return sorted(p for p in MARIDA.glob("S2_*.tif") if not re.search(r"_(cl|conf)\.tif$", p.name))


def parse(path: Path) -> dict:
    day, month, year, tile, number = re.match(r"S2_(\d+)-(\d+)-(\d+)_(\w{5})_(\d+)", path.stem).groups()
    date = datetime(2000 + int(year), int(month), int(day))
    return {"date": date, "tile": tile, "number": int(number)}


def cloud_cover(path: Path) -> float:
    """Share of the patch MARIDA's annotators marked as cloud (class 6), in percent."""
    labels = rasterio.open(path.with_name(path.stem + "_cl.tif")).read(1)
    return round(float((labels == 6).mean() * 100), 2)


# MARIDA annotation classes -> Sentinel-2 SCL classes, for the test catalogue's SCL asset
MARIDA_CLOUD, MARIDA_SHADOW, MARIDA_WATER = {6}, {13}, {7, 8, 10, 11, 15}
SCL_SHADOW, SCL_WATER, SCL_UNCLASSIFIED, SCL_CLOUD_HIGH = 3, 6, 7, 9


def scl_from_annotations(labels: np.ndarray) -> np.ndarray:
    """A 20 m SCL band made from MARIDA's 10 m annotations (MARIDA ships no SCL): per 2x2 block, cloud (9) if any
    pixel is annotated Clouds, else cloud shadow (3) if any is Cloud Shadows, else water (6) if any is a water
    class, else unclassified (7). The inference masks (cloud 999, water 997) are tested against it."""
    rows, cols = labels.shape[0] // 2, labels.shape[1] // 2
    blocks = labels[:rows * 2, :cols * 2].reshape(rows, 2, cols, 2).transpose(0, 2, 1, 3).reshape(rows, cols, 4)
    scl = np.full((rows, cols), SCL_UNCLASSIFIED, dtype="uint8")
    for classes, value in ((MARIDA_WATER, SCL_WATER), (MARIDA_SHADOW, SCL_SHADOW), (MARIDA_CLOUD, SCL_CLOUD_HIGH)):
        scl[np.isin(blocks, list(classes)).any(axis=2)] = value  # later rows win: cloud over shadow over water
    return scl


def write_cog(path: Path, data: np.ndarray, transform, crs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=0, compress="DEFLATE",
                       blocksize=128) as dst:
        dst.write(data, 1)


def to_dn(reflectance: np.ndarray) -> np.ndarray:
    return np.clip(np.round((reflectance - OFFSET) / SCALE), 1, 65535).astype("uint16")


def build(out: Path, base_url: str) -> None:
    base_url = base_url.rstrip("/")
    assets_dir, stac_dir = out / "assets", out / "stac"
    stac_dir.mkdir(parents=True, exist_ok=True)
    s2_items, ndvi_items, truth = [], [], {}
    for n, path in enumerate(patches()):
        meta = parse(path)
        with rasterio.open(path) as src:
            data, crs, transform = src.read(), src.crs, src.transform
            west, south, east, north = transform_bounds(crs, "EPSG:4326", *src.bounds, densify_pts=21)
            bounds = list(src.bounds)
        platform = "sentinel-2a" if n % 2 == 0 else "sentinel-2b"
        date = meta["date"]
        item_id = f"S2{platform[-1].upper()}_{meta['tile']}_{date:%Y%m%d}_{meta['number']}_L2A"
        folder = f"sentinel-cogs/sentinel-s2-l2a-cogs/{meta['tile'][:2]}/{meta['tile'][2]}/{meta['tile'][3:]}/" \
                 f"{date.year}/{date.month}/{item_id}"
        item_assets = {}
        for index, (band_id, key, resolution) in enumerate(BANDS):
            dn = to_dn(data[index])
            band_transform = transform
            if resolution == 20:  # as Sentinel-2 delivers it: 2x2 mean to 20 m
                dn = dn.reshape(dn.shape[0] // 2, 2, dn.shape[1] // 2, 2).mean(axis=(1, 3)).round().astype("uint16")
                band_transform = transform * transform.scale(2, 2)
            write_cog(assets_dir / folder / f"{band_id}.tif", dn, band_transform, crs)
            item_assets[key] = {
                "href": f"{base_url}/{folder}/{band_id}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "title": f"{key} ({band_id}) - {resolution}m", "roles": ["data", "reflectance"],
                "proj:shape": list(dn.shape), "proj:transform": list(band_transform)[:6],
                "gsd": resolution,
                "eo:bands": [{"name": band_id, "common_name": key}],
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                  "spatial_resolution": resolution, "scale": SCALE, "offset": OFFSET}],
            }
        # the scene classification, as Earth Search serves it (uint8, 20 m, nodata 0): see scl_from_annotations
        labels = rasterio.open(path.with_name(path.stem + "_cl.tif")).read(1).astype("int16")
        scl = scl_from_annotations(labels)
        scl_transform = transform * transform.scale(2, 2)
        write_cog(assets_dir / folder / "SCL.tif", scl, scl_transform, crs)
        item_assets["scl"] = {
            "href": f"{base_url}/{folder}/SCL.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": "Scene classification map (SCL)", "roles": ["data"], "proj:shape": list(scl.shape),
            "proj:transform": list(scl_transform)[:6], "gsd": 20,
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20, "unit": "class"}],
        }
        footprint = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        s2_items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "bbox": [west, south, east, north],
            "geometry": {"type": "Polygon", "coordinates": [footprint]},
            "properties": {
                "datetime": f"{date:%Y-%m-%d}T{TIMES.get(meta['tile'], '16:05:00')}.024000Z",
                "platform": platform, "constellation": "sentinel-2", "instruments": ["msi"],
                "eo:cloud_cover": cloud_cover(path), "proj:epsg": int(crs.to_epsg()),
                "mgrs:utm_zone": int(meta["tile"][:2]), "mgrs:latitude_band": meta["tile"][2],
                "mgrs:grid_square": meta["tile"][3:], "s2:processing_baseline": "04.00",
                "s2:product_type": "S2MSI2A",
            },
            "links": [], "assets": item_assets,
        })
        truth[item_id] = {"source": str(path), "date": f"{date:%Y-%m-%d}", "bbox": [west, south, east, north],
                          "bounds": bounds, "crs": crs.to_string(), "cloud_cover": cloud_cover(path),
                          "folder": folder, "scl": str(assets_dir / folder / "SCL.tif")}
        # IBM Research STAC datacube: NDVI of the same patch
        ndvi = ((data[7] - data[3]) / np.maximum(data[7] + data[3], 1e-6)).astype("float32")
        ndvi_id = f"marida-ndvi-{meta['tile']}-{date:%Y%m%d}-{meta['number']}"
        nc_path = assets_dir / "ibm" / "marida-ndvi" / f"{ndvi_id}.nc"
        write_netcdf(nc_path, ndvi, transform, date)
        x_extent = [transform.c + transform.a / 2, transform.c + transform.a * (ndvi.shape[1] - 0.5)]
        y_extent = [transform.f + transform.e * (ndvi.shape[0] - 0.5), transform.f + transform.e / 2]
        ndvi_items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": ndvi_id, "collection": "marida-ndvi",
            "stac_extensions": ["https://stac-extensions.github.io/datacube/v2.2.0/schema.json"],
            "bbox": [west, south, east, north], "geometry": {"type": "Polygon", "coordinates": [footprint]},
            "properties": {
                "datetime": f"{date:%Y-%m-%d}T00:00:00Z",
                "cube:dimensions": {
                    "x": {"type": "spatial", "axis": "x", "extent": x_extent, "step": transform.a,
                          "reference_system": int(crs.to_epsg())},
                    "y": {"type": "spatial", "axis": "y", "extent": y_extent, "step": transform.e,
                          "reference_system": int(crs.to_epsg())},
                    "time": {"type": "temporal", "extent": [f"{date:%Y-%m-%d}T00:00:00Z"] * 2},
                },
                "cube:variables": {"NDVI": {"dimensions": ["time", "y", "x"], "type": "data",
                                            "description": "NDVI from MARIDA B08 and B04"}},
            },
            "links": [],
            "assets": {"data": {"href": f"{base_url}/ibm/marida-ndvi/{ndvi_id}.nc", "type": "application/x-netcdf",
                                "roles": ["data"], "title": "NDVI datacube"}},
        })
        truth[ndvi_id] = {"source": str(path), "date": f"{date:%Y-%m-%d}", "bbox": [west, south, east, north],
                          "crs": crs.to_string(), "nc": str(nc_path)}
    dates = [i["properties"]["datetime"] for i in s2_items]
    for cid, items, title in (("sentinel-2-l2a", s2_items, "Sentinel-2 Level-2A (MARIDA patches)"),
                              ("marida-ndvi", ndvi_items, "NDVI datacubes (MARIDA patches)")):
        boxes = np.array([i["bbox"] for i in items])
        collection = {
            "type": "Collection", "stac_version": "1.0.0", "id": cid, "title": title,
            "description": f"{title}, served on loopback for GeoStudio tests", "license": "CC-BY-4.0",
            "extent": {"spatial": {"bbox": [[*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)]]},
                       "temporal": {"interval": [[min(dates), max(dates)]]}},
            "links": [],
        }
        (stac_dir / f"{cid}.json").write_text(json.dumps(collection))
        (stac_dir / f"{cid}.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))


def write_netcdf(path: Path, ndvi: np.ndarray, transform, date: datetime) -> None:
    import xarray as xr

    path.parent.mkdir(parents=True, exist_ok=True)
    xs = transform.c + transform.a * (np.arange(ndvi.shape[1]) + 0.5)
    ys = transform.f + transform.e * (np.arange(ndvi.shape[0]) + 0.5)
    ds = xr.Dataset({"NDVI": (("time", "y", "x"), ndvi[None])},
                    coords={"time": [np.datetime64(date, "ns")], "y": ys, "x": xs})
    ds.to_netcdf(path, engine="h5netcdf")


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2])
