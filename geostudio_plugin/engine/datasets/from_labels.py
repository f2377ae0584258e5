"""Onboarding from labels alone: Terrakit finds and fetches the imagery for each label's area and date.

Terrakit's own pipeline does it (process_labels -> download_data), with GeoStudio's connector layer
around it: credentials from the job's environment, endpoint overrides, timeouts and retries. The
fetched scenes and their rasterised labels then onboard like any folder (chipped to chip_size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import protocol
from ..connectors import access, network
from ..protocol import EngineError
from .scan import E_SOURCE
from .spec import OnboardSpec

IMAGE_SUFFIX = "_imputed.tif"
LABEL_SUFFIX = "_imputed_label.tif"


def images_from_labels(spec: OnboardSpec, labels_root: Path, work: Path, workspace: Any) -> tuple[Path, OnboardSpec]:
    options = spec.onboarding_options
    if len(spec.data_sources) != 1:
        raise EngineError("not_supported", "from_labels onboarding takes one data source so far "
                          f"(this spec has {len(spec.data_sources)}).", "Onboard one modality from labels.")
    source = spec.data_sources[0]
    if not source.connector or not source.collection:
        raise EngineError("0011", "from_labels needs the data source's connector and collection.",
                          "Set data_sources[0].connector and .collection (pick them in the Connectors dock).")
    access.check_credentials(source.connector, options.endpoint)
    network.install()
    access.apply_endpoint(source.connector, options.endpoint)
    coll = access.collection(source.connector, source.collection, workspace)
    bands = access.band_keys(source.connector, coll, [b.band_name for b in source.bands])
    work.mkdir(parents=True, exist_ok=True)
    name = "labels"
    protocol.progress("labels", 0.03, "reading labels")
    import terrakit

    endpoint = access.endpoint_of(source.connector, options.endpoint)
    with access.connector_errors(source.connector, endpoint, "reading the labels"):
        terrakit.process_labels(labels_folder=str(labels_root), dataset_name=name, working_dir=str(work),
                                label_type=options.label_type, datetime_info="filename")
    protocol.progress("download", 0.05, f"fetching {coll['collection']} for each label")
    with access.connector_errors(source.connector, endpoint, f"fetching {coll['collection']} for the labels"):
        queried = terrakit.download_data(
            data_sources=[{"data_connector": source.connector, "collection_name": coll["collection"],
                           "bands": bands, "save_file": ""}],
            date_allowance={"pre_days": options.pre_days, "post_days": options.post_days},
            transform={"scale_data_xarray": True, "impute_nans": True, "reproject": True},
            dataset_name=name, working_dir=str(work), max_cloud_cover=int(options.max_cloud_cover),
            datetime_bbox_shp_file=str(work / f"{name}_all_bboxes.shp"),
            labels_shp_file=str(work / f"{name}_labels.shp"), keep_files=False)
    if not queried:
        raise EngineError(E_SOURCE, f"{coll['collection']}: no imagery found for any label.",
                          f"Widen the date window (pre_days/post_days, now {options.pre_days}/{options.post_days}) "
                          "or raise max_cloud_cover.")
    protocol.log(f"fetched {len(queried)} scene(s) for the labels: {', '.join(os.path.basename(q) for q in queried)}")
    onboarded = spec.model_copy(deep=True)
    onboarded.dataset_url = str(work)
    onboarded.label_suffix = LABEL_SUFFIX
    onboarded.data_sources[0].file_suffix = IMAGE_SUFFIX
    for index, band in enumerate(onboarded.data_sources[0].bands):
        band.index = index  # the fetched file holds exactly the requested bands, in order
    onboarded.onboarding_options.from_labels = False
    if onboarded.onboarding_options.chip_size is None:
        onboarded.onboarding_options.chip_size = 256  # the Studio's default sample_dim
    return work, onboarded
