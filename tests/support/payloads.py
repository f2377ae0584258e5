"""Studio onboarding payloads for the bundled data, shared by the engine and QGIS test suites (stdlib only)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARIDA = REPO / "resources" / "sample_data" / "marida"
S1F = REPO / "resources" / "sample_data" / "sen1floods11"
FLOOD_FILES = (S1F / "train" / "Spain_7370579_S1Hand.tif", S1F / "train" / "Spain_7370579_LabelHand.tif",
               S1F / "S2Hand" / "Spain_7370579_S2Hand.tif")

HLS_FROM_MARIDA = [  # MARIDA band positions of the six HLS/Prithvi bands (B2, B3, B4, B8A, B11, B12)
    {"index": "1", "band_name": "Blue", "scaling_factor": "1", "RGB_band": "B"},
    {"index": "2", "band_name": "Green", "scaling_factor": "1", "RGB_band": "G"},
    {"index": "3", "band_name": "Red", "scaling_factor": "1", "RGB_band": "R"},
    {"index": "8", "band_name": "NIR_Narrow", "scaling_factor": "1"},
    {"index": "9", "band_name": "SWIR1", "scaling_factor": "1"},
    {"index": "10", "band_name": "SWIR2", "scaling_factor": "1"},
]
MARIDA_CLASSES = ["Marine Debris", "Dense Sargassum", "Sparse Sargassum", "Natural Organic Material", "Ship",
                  "Clouds", "Marine Water", "Sediment-Laden Water", "Foam", "Turbid Water", "Shallow Water", "Waves",
                  "Cloud Shadows", "Wakes", "Mixed Water"]


def marida_payload(url) -> dict:
    """The Studio's burn-scars payload shape, on the bundled MARIDA patches (0 = not annotated)."""
    return {
        "dataset_name": "MARIDA marine debris", "description": "Sentinel-2 patches, MARIDA (CC BY 4.0)",
        "dataset_url": str(url), "label_suffix": "_cl.tif", "purpose": "Segmentation",
        "data_sources": [{"bands": HLS_FROM_MARIDA, "connector": "sentinel_aws", "collection": "sentinel-2-l2a",
                          "file_suffix": ".tif", "modality_tag": "S2L2A"}],
        "label_categories": [{"id": str(i), "name": n, "color": marida_colour(i), "opacity": 1}
                             for i, n in enumerate(MARIDA_CLASSES, start=1)]
        + [{"id": "0", "name": "Not annotated", "color": "#000000", "opacity": "0"}],
        "onboarding_options": {"ignore_id": 0},
        "version": "v2",
    }


def flood_payload(url) -> dict:
    """The Studio's "Sentinel Flood Multimodal" card: S2 (13 bands) + S1 (VV, VH, align_dates)."""
    s2_names = ["Coastal_aerosol", "Blue", "Green", "Red", "05_-_Vegetation_Red_Edge", "06_-_Vegetation_Red_Edge",
                "07_-_Vegetation_Red_Edge", "08_-_NIR", "08A_-_Vegetation_Red_Edge", "09_-_Water_vapour",
                "10_-_SWIR_-_Cirrus", "11_-_SWIR", "12_-_SWIR"]
    roles = {"Blue": "B", "Green": "G", "Red": "R"}
    return {
        "dataset_name": "Sentinel Flood Multimodal Test", "description": "Flooding assets",
        "dataset_url": str(url), "label_suffix": "_LabelHand.tif", "purpose": "Segmentation",
        "data_sources": [
            {"bands": [{"index": str(i), "band_name": n, "description": "", "scaling_factor": "1",
                        **({"RGB_band": roles[n]} if n in roles else {})} for i, n in enumerate(s2_names)],
             "connector": "sentinelhub", "collection": "s2_l1c", "file_suffix": "_S2Hand.tif", "modality_tag": "S2L1C"},
            {"bands": [{"index": "0", "band_name": "VV (Gray)"}, {"index": "1", "band_name": "VH"}],
             "connector": "sentinelhub", "collection": "s1_grd", "modality_tag": "S1GRD", "align_dates": "true",
             "file_suffix": "_S1Hand.tif", "scaling_factor": [1, 1]},
        ],
        "label_categories": [{"id": "0", "name": "No Floods"}, {"id": "1", "name": "Floods", "color": "#1f78b4"}],
        "onboarding_options": {"chip_size": 256},
        "version": "v2",
    }


# The loopback STAC server's sentinel-2-l2a asset keys at MARIDA's band positions (tests/support/stac_data.py);
# nir is fetched x 2 (its scaling_factor), so a test sees the factor applied.
STAC_MODEL_BANDS = [{"index": 1, "band_name": "blue", "RGB_band": "B", "scaling_factor": 1},
                    {"index": 2, "band_name": "green", "RGB_band": "G", "scaling_factor": 1},
                    {"index": 3, "band_name": "red", "RGB_band": "R", "scaling_factor": 1},
                    {"index": 7, "band_name": "nir", "scaling_factor": 2}]


def marida_stac_payload(name: str = "MARIDA stac bands") -> dict:
    """MARIDA onboarded with the loopback STAC collection's band names, so a model tuned on it infers over an
    area fetched from that server (five whole 256 px patches: 3 train, 1 val, 1 test)."""
    return {
        "dataset_name": name, "dataset_url": str(MARIDA), "label_suffix": "_cl.tif", "purpose": "Segmentation",
        "data_sources": [{"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                          "file_suffix": ".tif", "bands": STAC_MODEL_BANDS}],
        "label_categories": [{"id": i, "name": n, "color": marida_colour(i)}
                             for i, n in enumerate(MARIDA_CLASSES, start=1)]
        + [{"id": 0, "name": "Not annotated"}],
        "onboarding_options": {"ignore_id": 0},
    }


def marida_colour(class_id: int) -> str:
    """A distinct colour per MARIDA class, so a test can tell the model's palette reached the map."""
    return "#%06x" % (0x1f78b4 + 4000 * class_id)
