"""Processing algorithm "Pre-scan dataset": the engine's ``prescan`` (what the Datasets dock's Pre-scan button
runs), for a folder, an archive or a URL, before onboarding it. Nothing is written in the workspace; the report
goes to a JSON or HTML file and what was found to a table (one row per file suffix, one per problem)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from .. import compat, contract
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example

#: The table's columns, as a memory layer URI fragment (no field-type enums: they moved between QGIS versions).
TABLE_FIELDS = ("kind:string(10)", "suffix:string(80)", "files:integer", "band_count:string(40)",
                "band_names:string(254)", "dtypes:string(80)", "crs:string(254)", "sizes:string(254)",
                "nodata:string(80)", "code:string(80)", "message:string(1000)")


def table_fields():  # noqa: ANN201 - QgsFields
    layer = QgsVectorLayer("None?" + "&".join(f"field={f}" for f in TABLE_FIELDS), "prescan", "memory")
    return layer.fields(), layer.wkbType()


def _joined(values: Any) -> str:
    return ", ".join("none" if v is None else str(v) for v in values or [])


def table_rows(report: contract.PrescanReport, label_suffix: str) -> list[dict[str, Any]]:
    """One row per suffix (the label's first) with its raster facts, then one per problem."""
    facts: dict[str, Any] = report.get("facts") or {}  # type: ignore[assignment]
    bands = report.get("bands_by_suffix") or {}
    rows = []
    for suffix, fact in facts.items():
        rows.append({"kind": "label" if suffix == label_suffix else "data", "suffix": suffix,
                     "files": int(fact.get("files") or 0), "band_count": _joined(fact.get("band_counts")),
                     "band_names": _joined(b.get("value") for b in bands.get(suffix, [])),
                     "dtypes": _joined(fact.get("dtypes")), "crs": _joined(fact.get("crs")),
                     "sizes": _joined(fact.get("sizes")), "nodata": _joined(fact.get("nodata"))})
    rows.sort(key=lambda row: row["kind"] != "label")
    for problem in report.get("problems") or []:
        rows.append({"kind": "problem", "code": str(problem.get("code") or ""),
                     "message": str(problem.get("message") or "")})
    return rows


def report_html(report: contract.PrescanReport, source: str, rows: list[dict[str, Any]]) -> str:
    """A small self-contained page: the verdict, the per-suffix facts and the problems."""
    verdict = "Ready to onboard" if report.get("ok") else f"{len(report.get('problems') or [])} problem(s)"
    columns = ("kind", "suffix", "files", "band_count", "band_names", "dtypes", "crs", "sizes", "nodata", "code",
               "message")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Pre-scan of {html.escape(source)}</title>"
            f"</head><body><h1>Pre-scan of {html.escape(source)}</h1><p>{verdict}: {report.get('pairs', 0)} "
            f"pair(s); label values {html.escape(str(report.get('label_values') or []))}.</p>"
            f"<table border='1'><tr>{head}</tr>{body}</table></body></html>\n")


def write_atomically(path: Path, text: str) -> None:
    """The whole file or none: written beside it, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


class PrescanDatasetAlgorithm(EngineAlgorithm):
    SOURCE = "SOURCE"
    LABEL_SUFFIX = "LABEL_SUFFIX"
    DATA_SUFFIXES = "DATA_SUFFIXES"
    REPORT = "REPORT"
    TABLE = "TABLE"
    PAIRS = "PAIRS"
    PROBLEMS = "PROBLEMS"

    GROUP_ID = "datasets"
    HELP = AlgorithmHelp(
        "Looks at a dataset source before onboarding it, as the Datasets dock's Pre-scan does: pairs image and "
        "label files by stem, reads every raster's header (bands, size, type, CRS, nodata) and the label values, "
        "and lists every problem onboarding would stop on. Nothing is written in the workspace.",
        inputs=(("SOURCE", "folder, zip/tar or URL of the image and label files"),
                ("LABEL_SUFFIX", "how label files end, e.g. _LabelHand.tif"),
                ("DATA_SUFFIXES", "how image files end, one per modality, comma separated, e.g. _S1Hand.tif")),
        outputs=(("REPORT", "the engine's report, as JSON (.json) or a page (.html)"),
                 ("TABLE", "one row per suffix (files, bands, types, CRS, sizes, nodata), one per problem"),
                 ("PAIRS", "image/label pairs found"), ("PROBLEMS", "problems found (0: ready to onboard)")),
        example=qgis_process_example("prescan_dataset", "SOURCE=resources/sample_data/sen1floods11/train",
                                     "LABEL_SUFFIX=_LabelHand.tif", "DATA_SUFFIXES=_S1Hand.tif",
                                     "REPORT=/tmp/prescan.html", "TABLE=/tmp/prescan.csv"))

    def name(self) -> str:
        return "prescan_dataset"

    def displayName(self) -> str:  # noqa: N802
        return "Pre-scan dataset"

    def createInstance(self) -> "PrescanDatasetAlgorithm":  # noqa: N802
        return PrescanDatasetAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.addParameter(QgsProcessingParameterString(self.SOURCE, "Source: folder, zip/tar or URL"))
        self.addParameter(QgsProcessingParameterString(self.LABEL_SUFFIX, "Label suffix"))
        self.addParameter(QgsProcessingParameterString(self.DATA_SUFFIXES, "Data suffixes (comma separated)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.REPORT, "Report",
                                                                "HTML files (*.html);;JSON files (*.json)"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.TABLE, "What the pre-scan found",
                                                            compat.SOURCE_TABLE))
        self.addOutput(QgsProcessingOutputNumber(self.PAIRS, "Pairs found"))
        self.addOutput(QgsProcessingOutputNumber(self.PROBLEMS, "Problems found"))

    def build_spec(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``prescan`` spec, by the builder the Datasets dock uses."""
        source = self.parameterAsString(parameters, self.SOURCE, context).strip()
        label = self.parameterAsString(parameters, self.LABEL_SUFFIX, context).strip()
        data = [s.strip() for s in self.parameterAsString(parameters, self.DATA_SUFFIXES, context).split(",")
                if s.strip()]
        for name, value in ((self.SOURCE, source), (self.LABEL_SUFFIX, label), (self.DATA_SUFFIXES, data)):
            if not value:
                raise QgsProcessingException(f"{name}: give a value (see the algorithm's help).")
        return contract.prescan_spec(source, label, data)

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        spec = self.build_spec(parameters, context)
        report_path = Path(self.parameterAsFileOutput(parameters, self.REPORT, context))
        result = self.run_engine(contract.PRESCAN, spec, feedback)
        if result is None:
            return {}
        report: contract.PrescanReport = result["summary"]["report"]
        rows = table_rows(report, spec["label_suffix"])
        fields, wkb_type = table_fields()
        sink, table_id = self.parameterAsSink(parameters, self.TABLE, context, fields, wkb_type)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.TABLE))
        for row in rows:
            feature = QgsFeature(fields)
            for key, value in row.items():
                feature[key] = value
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        text = (report_html(report, spec["dataset_url"], rows) if report_path.suffix.lower() in (".html", ".htm")
                else json.dumps(report, indent=2) + "\n")
        write_atomically(report_path, text)
        problems = len(report.get("problems") or [])
        feedback.pushInfo(f"{report.get('pairs', 0)} pair(s), {problems} problem(s); report in {report_path}.")
        return {self.REPORT: str(report_path), self.TABLE: table_id, self.PAIRS: int(report.get("pairs") or 0),
                self.PROBLEMS: problems}
