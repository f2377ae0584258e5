"""What every GeoStudio algorithm shares: run one engine job with Processing's feedback and cancel, its group,
its help (help.py), the workspace choices (models, datasets, templates) as enums checked before the engine
starts, and the "Studio payload (JSON)" parameter read by the one rule in contract.py."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QIcon

from .. import contract, engine_runtime, settings
from ..contract import is_log, is_progress
from ..engine_client import EngineJob, EngineNotReady
from ..paths import icon_path
from .help import AlgorithmHelp

#: The provider's groups: id -> name shown in the toolbox.
GROUPS = {"data": "Data", "datasets": "Datasets", "finetuning": "Fine-tuning", "inference": "Inference"}

PAYLOAD = "PAYLOAD"
PAYLOAD_HELP = ("a Studio payload as is: JSON text, or the path of a .json file. When given, the payload's fields "
                "win over the other parameters (contract.with_studio_payload)")


def setup_command() -> str:
    """The command line that builds the managed engine environment (engine_runtime's ``ensure``)."""
    return f"PYTHONPATH={engine_runtime.plugin_parent()} python3 -m geostudio_plugin.engine_runtime ensure"


def engine_missing_text() -> str:
    """Why no engine can run and how to set one up; outside the QGIS desktop also the command to run."""
    override = settings.engine_python_override()
    if override:
        text = (f"The GeoStudio engine Python set in GeoStudio > Settings ({override}) does not exist. Point "
                "'Engine Python' at an interpreter that has the engine's packages, or clear it to use the engine "
                "GeoStudio sets up.")
    else:
        text = ("The GeoStudio engine is not set up yet. Open GeoStudio > Settings and click 'Set up engine' "
                f"(downloads {engine_runtime.ENV_SIZE_NOTE}).")
    if QgsApplication.platform() != "desktop":  # qgis_process, a script: no Settings dialog at hand
        text += (f" From the command line: {setup_command()} (in a clone of the repository: make engine)"
                 + (", after clearing the 'Engine Python' setting (engine\\python under [GeoStudio] in the profile's "
                    "QGIS3.ini)." if override else "."))
    return text


class EngineAlgorithm(QgsProcessingAlgorithm):
    GROUP_ID = ""  # one of GROUPS
    HELP = AlgorithmHelp("")
    #: enum parameters whose options are workspace items (name -> what they are, for the refusal's wording)
    CHOICES: dict[str, str] = {}

    # ------------------------------------------------------------------ what the toolbox shows
    def group(self) -> str:
        return GROUPS.get(self.GROUP_ID, "")

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def icon(self) -> QIcon:
        return QIcon(icon_path("geostudio.svg"))

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP.html()

    def helpUrl(self) -> str:  # noqa: N802
        return self.HELP.url()

    # -------------------------------------------------------------------------- parameters
    def add_choice(self, name: str, description: str, options: Sequence[str], *, optional: bool = False,
                   default: Optional[str] = None) -> None:
        """An enum whose values are the workspace's item ids (static strings: ``MODEL=<tune id>`` in qgis_process
        and in the Model Designer); the first item is the default. Listed in CHOICES, checked before the run."""
        options = list(dict.fromkeys(o for o in options if o))
        chosen = default if default in options else (options[0] if options else None)
        self.addParameter(QgsProcessingParameterEnum(name, description, options, False, chosen, optional, True))

    def add_payload(self, what: str) -> None:
        self.addParameter(QgsProcessingParameterString(
            PAYLOAD, f"Studio payload (JSON; optional: the {what} as the Studio sends it)", optional=True,
            multiLine=True))

    def checkParameterValues(self, parameters: dict[str, Any],  # noqa: N802
                             context: QgsProcessingContext) -> tuple[bool, str]:
        """An unknown workspace item and a bad payload, each named; then Processing's own check (an empty choice
        counts as not given: the algorithm's own check says what to pick)."""
        parameters = {k: v for k, v in parameters.items() if not (k in self.CHOICES and v == "")}
        for name, noun in self.CHOICES.items():
            definition = self.parameterDefinition(name)
            value = parameters.get(name)
            if definition is None or not isinstance(value, str) or not value:  # empty: Processing's own check
                continue
            if str(value) not in definition.options():
                known = ", ".join(definition.options()) or "none yet"
                return False, (f"No {noun} '{value}' in the workspace {settings.workspace()} (parameter {name}). "
                               f"The workspace has: {known}.")
        if self.parameterDefinition(PAYLOAD) is not None:
            try:
                self.studio_payload(parameters, context)
            except QgsProcessingException as exc:
                return False, str(exc)
        return super().checkParameterValues(parameters, context)

    def studio_payload(self, parameters: dict[str, Any], context: QgsProcessingContext) -> Optional[dict[str, Any]]:
        """The PAYLOAD parameter as a dict (None when empty); bad JSON or a missing file names the parameter."""
        text = self.parameterAsString(parameters, PAYLOAD, context) if PAYLOAD in parameters else ""
        try:
            return contract.studio_payload(text)
        except ValueError as exc:
            raise QgsProcessingException(f"{PAYLOAD}: {exc}") from None

    # ------------------------------------------------------------------------------ running
    def run_engine(self, command: str, spec: dict[str, Any], feedback: QgsProcessingFeedback,
                   secrets: Optional[dict[str, str]] = None) -> Optional[dict[str, Any]]:
        """The engine's result event, or None when cancelled; an engine error becomes QgsProcessingException."""

        def on_event(event: dict[str, Any]) -> None:
            if is_progress(event):
                feedback.setProgress(100.0 * float(event.get("fraction") or 0))
                feedback.setProgressText(str(event.get("message", "")))
            elif is_log(event):
                feedback.pushInfo(str(event.get("message", "")))

        python = settings.engine_python()
        if python is None and settings.engine_python_override():  # not the managed engine in its place, silently
            raise QgsProcessingException(engine_missing_text())
        job = EngineJob(command, spec, python=python, workspace=settings.workspace(),
                        secrets=secrets, allow_downloads=settings.allow_downloads())
        try:
            outcome = job.run(on_event, feedback.isCanceled)
        except EngineNotReady:
            raise QgsProcessingException(engine_missing_text()) from None
        if outcome.cancelled or feedback.isCanceled():
            feedback.pushInfo(f"{self.displayName()} was cancelled; the engine stopped and its unfinished outputs "
                              "were removed.")
            return None
        if not outcome.ok:
            failure = outcome.failure()
            if failure.details:
                feedback.reportError(failure.details)
            raise QgsProcessingException(failure.text)
        return outcome.result

    def workspace_changed(self) -> None:
        """Called in processAlgorithm (a worker thread in the toolbox) after a job that added a model or a dataset:
        postProcessAlgorithm, on the main thread, then refreshes the provider so every algorithm's lists follow."""
        self._workspace_changed = True

    def postProcessAlgorithm(self, context: QgsProcessingContext,  # noqa: N802
                             feedback: QgsProcessingFeedback) -> dict[str, Any]:
        if getattr(self, "_workspace_changed", False):
            from .. import workspace_index

            workspace_index.changed()
        return {}
