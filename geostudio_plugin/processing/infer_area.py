"""Processing algorithm "Run inference (area and dates)": the Inference dock's area mode as an algorithm.

The request is an ``inference_request.AreaRequest`` with the dock's checks (a problem names its parameter here)
and the dock's payload builder; the engine fetches the model's input for the area and dates, predicts and masks.
The run loads as one layer group (run_layers) in postProcessAlgorithm, which QGIS calls on the main thread.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Optional

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .. import compat, contract, credentials, inference_request, qgis_inputs, run_layers, settings, workspace_index
from ..inference_request import AreaRequest
from .engine_algorithm import PAYLOAD, PAYLOAD_HELP, EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


class InferAreaAlgorithm(EngineAlgorithm):
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    START_DATE = "START_DATE"
    END_DATE = "END_DATE"
    EVERY_DATE = "EVERY_DATE"
    MAX_CLOUD = "MAX_CLOUD"
    CLOUD_MASK = "CLOUD_MASK"
    SNOW_MASK = "SNOW_MASK"
    WATER_MASK = "WATER_MASK"
    LOAD = "LOAD"
    INFERENCE_JSON = "INFERENCE_JSON"
    INFERENCE_FOLDER = "INFERENCE_FOLDER"
    PREDICTIONS = "PREDICTIONS"

    MASK_PARAMETERS = {"cloud_masking": CLOUD_MASK, "snow_ice_masking": SNOW_MASK,
                       "permanent_water_masking": WATER_MASK}
    #: The field a request check names (inference_request's wording, shared with the dock) -> its parameter.
    FIELD_PARAMETERS = {"Model": MODEL, "Area": EXTENT, "Start date": START_DATE, "End date": END_DATE,
                        "Dates": START_DATE, "Max cloud cover": MAX_CLOUD, "Post-processing": CLOUD_MASK}

    GROUP_ID = "inference"
    CHOICES = {MODEL: "tuned model"}
    HELP = AlgorithmHelp(
        "Runs a model fine-tuned with GeoStudio over an area and a date or a range of dates, as the Inference "
        "dock's 'Area and dates' mode does: the engine finds the scenes under the cloud-cover limit, fetches the "
        "model's input bands for the area (with the endpoints and credentials set in the Connectors dock), "
        "predicts, and applies the masks asked for. A range gives its clearest day, or every day with data when "
        "'Every date' is on. The run is kept in the GeoStudio workspace and, when loading is on, loads into the "
        "project as one layer group (time-aware for several dates). Bad input is refused before the engine "
        "starts, naming the parameter; cancelling stops the engine and keeps nothing.",
        inputs=(("MODEL", "a finished tune of the workspace, by id"),
                ("EXTENT", "the area, in any CRS (turned into an EPSG:4326 bbox)"),
                ("START_DATE, END_DATE", "YYYY-MM-DD; no end date: that one day"),
                ("EVERY_DATE", "every day of the range with data, one prediction each"),
                ("MAX_CLOUD", "max scene cloud cover, 0-100 %"),
                ("CLOUD_MASK, SNOW_MASK, WATER_MASK", "masks written into the masked predictions"),
                ("LOAD", "load the run as one layer group"),
                (PAYLOAD, PAYLOAD_HELP + " (the Studio's inference payload: fine_tuning_id, spatial_domain, "
                 "temporal_domain, maxcc, post_processing); then MODEL, EXTENT and the dates may stay empty")),
        outputs=(("INFERENCE_JSON", "the run's inference.json"), ("INFERENCE_FOLDER", "the run's folder"),
                 ("PREDICTIONS", "one prediction GeoTIFF per date")),
        example=qgis_process_example("infer_area", "MODEL=<tune id>",
                                     "'EXTENT=-88.19,-88.15,15.77,15.84 [EPSG:4326]'", "START_DATE=2024-09-10",
                                     "END_DATE=2024-09-14", "LOAD=false"))

    def __init__(self) -> None:
        super().__init__()
        self._run: Optional[dict[str, Any]] = None  # the run record, for postProcessAlgorithm
        self._results: dict[str, Any] = {}
        self._load = False

    def name(self) -> str:
        return "infer_area"

    def displayName(self) -> str:  # noqa: N802
        return "Run inference (area and dates)"

    def createInstance(self) -> "InferAreaAlgorithm":  # noqa: N802
        return InferAreaAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        # optional for Processing: a Studio payload may give them; build_request refuses them missing otherwise
        self.add_choice(self.MODEL, "Tuned model", [t["tune_id"] for t in workspace_index.models()], optional=True)
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Area", optional=True))
        self.addParameter(QgsProcessingParameterString(self.START_DATE, "Start date (YYYY-MM-DD)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.END_DATE, "End date (YYYY-MM-DD; empty: the start date "
                                                                      "only)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.EVERY_DATE, "Every date of the range with data (not "
                                                                         "only its clearest)", defaultValue=False))
        self.addParameter(QgsProcessingParameterNumber(self.MAX_CLOUD, "Max cloud cover (%)", compat.NUMBER_INTEGER,
                                                       defaultValue=inference_request.DEFAULT_MAXCC, minValue=0,
                                                       maxValue=100))
        self.addParameter(QgsProcessingParameterBoolean(self.CLOUD_MASK, "Mask clouds", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(self.SNOW_MASK, "Mask snow and ice", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(self.WATER_MASK, "Mask permanent water", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(self.LOAD, "Load the run into the project as one layer group",
                                                        defaultValue=True))
        self.add_payload("inference request")
        self.addOutput(QgsProcessingOutputFile(self.INFERENCE_JSON, "Run record (inference.json)"))
        self.addOutput(QgsProcessingOutputFolder(self.INFERENCE_FOLDER, "Run folder"))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.PREDICTIONS, "Predictions (one per date)"))

    def _refuse(self, problem: str) -> QgsProcessingException:
        """A request check's message, with the parameter to fix."""
        field = problem.split(":", 1)[0]
        parameter = self.FIELD_PARAMETERS.get(field)
        return QgsProcessingException(f"{problem} (parameter {parameter})" if parameter else problem)

    def _date(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> Optional[_dt.date]:
        text = self.parameterAsString(parameters, name, context).strip()
        if not text:
            return None
        try:
            return _dt.date.fromisoformat(text)
        except ValueError:
            raise QgsProcessingException(f"{name}: '{text}' is not a date; give it as YYYY-MM-DD.") from None

    def build_request(self, parameters: dict[str, Any], context: QgsProcessingContext) -> AreaRequest:
        """The dock's AreaRequest from the parameters, with the dock's checks; a problem names its parameter."""
        model = self.parameterAsString(parameters, self.MODEL, context).strip()
        extent = self.parameterAsExtent(parameters, self.EXTENT, context)
        bbox = qgis_inputs.bbox_4326(extent, self.parameterAsExtentCrs(parameters, self.EXTENT, context),
                                     context.transformContext())  # the one extent -> EPSG:4326 rule
        if bbox is None and not extent.isNull():  # empty: the check below says so
            bbox = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
        start = self._date(parameters, self.START_DATE, context)
        if start is None:
            raise self._refuse("Start date: give the first day, as YYYY-MM-DD.")
        end = self._date(parameters, self.END_DATE, context)
        problem = "" if model else "Model: pick a tuned model first (fine-tune one in the Fine-tuning tab)."
        problem = problem or inference_request.bbox_problem(bbox)
        problem = problem or inference_request.date_problem(start, end, _dt.date.today())
        if problem:
            raise self._refuse(problem)
        record = self._model_record(model)
        dates = inference_request.date_entry(start, end)
        request = AreaRequest(
            model=model, bbox_4326=tuple(bbox), dates=(dates,),
            maxcc=self.parameterAsInt(parameters, self.MAX_CLOUD, context),
            masks={mask: self.parameterAsBool(parameters, name, context)
                   for mask, name in self.MASK_PARAMETERS.items()},
            device=contract.normalise_device(settings.device()),
            every_date=end is not None and self.parameterAsBool(parameters, self.EVERY_DATE, context),
            location=inference_request.place_text(bbox), description=f"{record.get('name') or 'area'} {dates}")
        problem = request.problem()
        if problem:
            raise self._refuse(problem)
        return request

    @staticmethod
    def _model_record(model: str) -> dict[str, Any]:
        """The finished tune the model names (by id or name, as the engine resolves it); {} when none does."""
        for record in workspace_index.models():
            if model in (record.get("tune_id"), record.get("name")):
                return dict(record)
        return {}

    def build_payload(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``infer`` payload, by the dock's builder (AreaRequest.to_payload) with the user's endpoints; or the
        Studio payload given in PAYLOAD, by the contract's one rule (the endpoint rule applied to it too)."""
        studio = self.studio_payload(parameters, context)
        if studio is None:
            return self.build_request(parameters, context).to_payload(credentials.endpoints())
        user = credentials.endpoints()
        spec = contract.with_studio_payload(studio, defaults={"device": contract.normalise_device(settings.device())})
        spec["endpoints"] = contract.resolve_endpoints(user, user, dict(studio.get("endpoints") or {}))
        if not str(spec.get("fine_tuning_id") or "").strip():
            raise QgsProcessingException(f"{PAYLOAD}: the payload names no model (fine_tuning_id); add it, e.g. "
                                         '"fine_tuning_id": "<tune id>".')
        return spec

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        payload = self.build_payload(parameters, context)
        secrets = credentials.for_model(self._model_record(payload["fine_tuning_id"]))
        result = self.run_engine(contract.INFER, payload, feedback, secrets=secrets)
        if result is None:
            return {}
        outputs = result.get("outputs") or {}
        self._run = run_layers.run_record(result)
        self._load = self.parameterAsBool(parameters, self.LOAD, context)
        predictions = [str(o["prediction"]) for o in self._run.get("outputs", []) if o.get("prediction")]
        dates = run_layers.dates_text(run_layers.run_dates(self._run))
        feedback.pushInfo(f"Inference {result['summary'].get('inference_id', '')}: {dates}, "
                          f"in {outputs.get('inference_dir')}.")
        self._results = {self.INFERENCE_JSON: str(outputs.get("inference_json") or ""),
                         self.INFERENCE_FOLDER: str(outputs.get("inference_dir") or ""),
                         self.PREDICTIONS: predictions}
        return dict(self._results)

    def postProcessAlgorithm(self, context: QgsProcessingContext,  # noqa: N802
                             feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """On the main thread: the run as one layer group in the context's project (when asked and there is one)."""
        project = context.project()
        if self._run is not None and self._load and project is not None:
            try:
                loaded = run_layers.load_run(self._run, project)
                feedback.pushInfo(f"Loaded as the layer group '{loaded.group.name()}'.")
            except (OSError, ValueError, KeyError, RuntimeError) as error:  # a file QGIS cannot open
                feedback.reportError(f"The run is kept in {self._results.get(self.INFERENCE_FOLDER)}, but could "
                                     f"not be loaded: {error}")
        return dict(self._results)
