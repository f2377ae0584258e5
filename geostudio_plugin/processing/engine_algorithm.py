"""What every GeoStudio algorithm shares: run one engine job with Processing's feedback and cancel."""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingFeedback

from .. import settings
from ..contract import is_log, is_progress
from ..engine_client import EngineJob, EngineNotReady


class EngineAlgorithm(QgsProcessingAlgorithm):
    def run_engine(self, command: str, spec: dict[str, Any], feedback: QgsProcessingFeedback,
                   secrets: Optional[dict[str, str]] = None) -> Optional[dict[str, Any]]:
        """The engine's result event, or None when cancelled; an engine error becomes QgsProcessingException."""

        def on_event(event: dict[str, Any]) -> None:
            if is_progress(event):
                feedback.setProgress(100.0 * float(event.get("fraction") or 0))
                feedback.setProgressText(str(event.get("message", "")))
            elif is_log(event):
                feedback.pushInfo(str(event.get("message", "")))

        job = EngineJob(command, spec, python=settings.engine_python(), workspace=settings.workspace(),
                        secrets=secrets, allow_downloads=settings.allow_downloads())
        try:
            outcome = job.run(on_event, feedback.isCanceled)
        except EngineNotReady as exc:
            raise QgsProcessingException(str(exc)) from None
        if outcome.cancelled or feedback.isCanceled():
            return None
        if not outcome.ok:
            failure = outcome.failure()
            if failure.details:
                feedback.reportError(failure.details)
            raise QgsProcessingException(failure.text)
        return outcome.result
