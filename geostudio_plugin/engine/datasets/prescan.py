"""``prescan``: look at a dataset source before onboarding it; nothing is written.

Takes the Studio's pre-scan body (``dataset_url``, ``label_suffix``, ``training_data_suffixes``) or a
whole onboarding payload. Answers with the Studio's shape (per data suffix, the band descriptions of its
first file) and a report: file counts, pairs, per-suffix raster facts (bands, size, dtype, CRS, nodata),
label values found, and every problem onboarding would stop on.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ConfigDict, model_validator

from .. import protocol
from ..errors import CODES
from ..specs import PathOrUrl, StudioModel, Suffix, literal_suffix, parse_spec
from ..workspace import Workspace
from .scan import MIN_SCENE_SIDE, scan
from .source import materialise
from .spec import OnboardSpec


class PrescanSpec(StudioModel):
    """The pre-scan body, or a whole onboarding payload (its other fields are kept: see ``onboarding``)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, populate_by_name=True)

    dataset_url: PathOrUrl
    label_suffix: Suffix
    training_data_suffixes: list[Suffix] = []
    data_sources: list[dict[str, Any]] = []
    label_categories: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _suffixes(self) -> "PrescanSpec":
        if not self.training_data_suffixes:
            self.training_data_suffixes = [literal_suffix(str(s["file_suffix"])) for s in self.data_sources
                                           if isinstance(s, dict) and s.get("file_suffix")]
        if not self.training_data_suffixes:
            raise ValueError("give training_data_suffixes (or data_sources with file_suffix)")
        return self

    def onboarding(self) -> Optional[OnboardSpec]:
        """The whole onboarding payload, validated, when this is one (it names data_sources and dataset_name)."""
        data = self.model_dump(exclude={"training_data_suffixes"})  # the pre-scan's own field
        if not (data.get("data_sources") and data.get("dataset_name")):
            return None
        return parse_spec(OnboardSpec, data, "onboarding")


def studio_code(code: str) -> Optional[str]:
    return CODES[code].studio_code if code in CODES else None


def _facts(infos: list[Any]) -> dict[str, Any]:
    def distinct(values: list[Any]) -> list[Any]:
        return sorted({v for v in values}, key=str)

    return {"files": len(infos), "band_counts": distinct([i.count for i in infos]),
            "dtypes": distinct([i.dtype for i in infos]), "crs": distinct([i.crs for i in infos]),
            "sizes": distinct([f"{i.width}x{i.height}" for i in infos]),
            "nodata": distinct([None if i.nodata != i.nodata else i.nodata for i in infos])}


def prescan(spec: PrescanSpec, full: Optional[OnboardSpec], workspace: Workspace) -> dict[str, Any]:
    need = label_ids = None
    if full is not None:
        need = {s.file_suffix: max(b.index for b in s.bands) + 1 for s in full.data_sources}
        label_ids = set(full.label_map()) if full.purpose == "Segmentation" else None
    with workspace.scratch("prescan") as scratch, materialise(spec.dataset_url, scratch) as root:
        protocol.progress("prescan", 0.2, "pairing files and reading headers")
        report = scan(root, spec.label_suffix, spec.training_data_suffixes, need, label_ids,
                      ignore_id=full.onboarding_options.ignore_id if full else -1, min_side=MIN_SCENE_SIDE)
    by_suffix: dict[str, list[dict[str, str]]] = {}
    facts: dict[str, Any] = {}
    for suffix in [spec.label_suffix, *spec.training_data_suffixes]:
        infos = [report.info(s.label if suffix == spec.label_suffix else s.images[suffix])
                 for s in report.samples]
        facts[suffix] = _facts(infos)
        if suffix != spec.label_suffix and infos:
            first = infos[0]
            by_suffix[suffix] = [{"id": str(i), "value": first.descriptions[i] or f"Band {i + 1}"}
                                 for i in range(first.count)]
    protocol.progress("prescan", 1.0, f"{len(report.samples)} pair(s), {len(report.problems)} problem(s)")
    return {
        "bands_by_suffix": by_suffix,
        "counts": report.counts,
        "pairs": len(report.samples),
        "facts": facts,
        "label_values": report.label_values,
        "problems": [{"code": c, "studio_code": studio_code(c), "message": m} for c, m in report.problems],
        "ok": not report.problems,
    }


def run(spec: PrescanSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = prescan(spec, spec.onboarding(), workspace)
    return {}, {**summary["bands_by_suffix"], "report": summary}
