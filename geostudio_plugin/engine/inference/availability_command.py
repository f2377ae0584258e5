"""The ``check-availability`` command: which dates have data for a tuned model's input over an area.

Kept apart from availability.py so that the check ``infer`` runs imports no command code (infer -> area_inputs
-> availability, and this module -> infer, would be a circle).
"""

from __future__ import annotations

from typing import Any

from .. import protocol
from ..workspace import Workspace
from .availability import AvailabilitySpec, check, model_input_sources
from .infer import find_tune
from .plan import check_area, parse_dates, union


def run(spec: AvailabilitySpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = None
    if spec.fine_tuning_id:
        record, _ = find_tune(workspace, spec.fine_tuning_id)
    sources = model_input_sources(record, workspace, spec.model_input_data_spec)
    boxes = spec.spatial_domain.areas()
    area = check_area(boxes, spec.max_area_sq_km)
    requests = parse_dates(spec.temporal_domain)
    entries = check(sources, boxes, requests, spec.maxcc, dict(spec.endpoints), workspace, spec.temporal_each)
    available = [e for e in entries if e["date"]]
    protocol.progress("availability", 1.0, f"{len(available)} of {len(entries)} date(s) have data")
    return {}, {"area_sq_km": round(area, 3), "bbox": union(boxes), "maxcc": spec.maxcc,
                "modalities": [s.modality_tag for s in sources], "dates": entries,
                "available": len(available) == len(entries)}
