"""The engine's commands: one entry each, standard library only.

Each entry names its command function and its spec model as dotted paths, imported
only when that command runs, so ``catalog`` never pays for (or depends on)
TerraTorch and this table can be read without the engine's environment
(``scripts/engine --help``, the QGIS side's tests).

A command function takes ``(spec, workspace)`` (the validated spec model, or
``None`` for a command without one) and returns ``(outputs, summary)``; the
engine's ``__main__`` emits them as the one ``result`` event.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

_PACKAGE = __name__.rsplit(".", 1)[0]  # geostudio_plugin.engine


def _load(path: str) -> Any:
    """``"module.sub:name"`` (relative to the engine package) -> the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


@dataclass(frozen=True)
class Command:
    name: str
    function: str  # "module:function", relative to geostudio_plugin.engine
    spec: Optional[str]  # "module:Model" (a pydantic model), or None: the command reads no spec
    needs_spec: bool  # False: the spec argument may be left out (an empty spec then)
    help: str
    label: str = ""  # what error messages call the spec ("The onboarding spec has ...")

    @property
    def module(self) -> str:
        return f"{_PACKAGE}.{self.function.partition(':')[0]}"

    def spec_model(self) -> Optional[type]:
        """The pydantic class of this command's spec (imports pydantic and the spec's module)."""
        return _load(self.spec) if self.spec else None

    def command_function(self) -> Callable[[Any, Any], tuple[dict[str, Any], dict[str, Any]]]:
        return _load(self.function)

    def parse(self, data: Any) -> Any:
        """The validated spec (a SpecError naming every bad field otherwise); None for a command without one."""
        model = self.spec_model()
        if model is None:
            return None
        from .specs import parse_spec

        return parse_spec(model, {} if data is None and not self.needs_spec else data, self.label or self.name)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("catalog", "catalog_command:run", "connectors.spec:CatalogSpec", False,
            "list connectors, collections, templates and backbones"),
    Command("prescan", "datasets.prescan:run", "datasets.prescan:PrescanSpec", True,
            "check a dataset source before onboarding (nothing is written)", "pre-scan"),
    Command("onboard", "datasets.onboard:run", "datasets.spec:OnboardSpec", True,
            "onboard a dataset from a Studio onboarding payload", "onboarding"),
    Command("tune", "tuning.tune:run", "tuning.spec:TuneSpec", True,
            "fine-tune a model from a Studio tune payload"),
    Command("infer", "inference.infer:run", "inference.spec:InferSpec", True,
            "run a tuned model on GeoTIFFs", "inference"),
    Command("check-availability", "inference.availability_command:run", "inference.availability:AvailabilitySpec", True,
            "which dates have data for a model's input over an area (nearest dates when none)", "availability"),
    Command("list", "listing:run", None, False,
            "list datasets, tunes and inference runs in the workspace"),
    Command("delete", "deleting:run", "deleting:DeleteSpec", True,
            "delete a dataset, tune, inference run or fetch from the workspace"),
    Command("search", "connectors.search:run", "connectors.spec:SearchSpec", True,
            "find scenes and dates for an area, dates and collection"),
    Command("fetch", "connectors.fetch:run", "connectors.spec:FetchSpec", True,
            "download bands for an area and dates as Cloud-Optimized GeoTIFFs"),
    Command("check", "connectors.check:run", "connectors.spec:CheckSpec", True,
            "test the connection and credentials of a connector"),
    Command("weights", "tuning.weights:run", "tuning.weights:WeightsSpec", True,
            "download a backbone's pre-trained weights into the Hugging Face cache", "weights"),
    Command("export-model", "models:export_model", "models:ExportModelSpec", True,
            "write a finished tune (model card, configs, best checkpoint) as one zip", "model export"),
    Command("import-model", "models:import_model", "models:ImportModelSpec", True,
            "import a model zip, or the Studio's config_deploy.yaml + checkpoint, as a finished tune",
            "model import"),
    Command("template-import", "tuning.user_templates:run_import", "tuning.user_templates:TemplateImportSpec", True,
            "import a TerraTorch YAML (or Jinja YAML) as a user template, validated against a dataset",
            "template import"),
    Command("template-export", "tuning.user_templates:run_export", "tuning.user_templates:TemplateExportSpec", True,
            "export a template as the Studio's template JSON (content base64) or a zip", "template export"),
)}


def usage() -> str:
    """The command list, one line each (``scripts/engine --help`` without the engine's environment)."""
    width = max(map(len, COMMANDS))
    lines = ["usage: scripts/engine [--workspace DIR] COMMAND [SPEC.json | -]", "", "commands:"]
    lines += [f"  {c.name:<{width}}  {c.help}" + ("" if c.needs_spec else " (no SPEC)" if c.spec is None
                                                  else " (SPEC optional)") for c in COMMANDS.values()]
    lines += ["", "Events are JSON lines on stdout; see README \"Engine protocol\"."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(usage())
