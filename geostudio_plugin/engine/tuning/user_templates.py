"""User-defined templates: ``template-import`` (validated before anything is stored) and ``template-export``.

A user template is a TerraTorch YAML, optionally Jinja with the built-ins' variables (``render.build_context``:
``run_dir``, ``checkpoint_dir``, ``modality``, ``norm_means``, ``num_classes``, ``backbone``, ``runner``,
``data``, ...), and an optional parameter schema (JSON Schema, the Studio's ``model_params`` shape) whose
defaults the render uses. Its parameters are the built-in groups with the built-in defaults of its purpose,
overlaid with its own schema (``catalog.user_template_schema``), so ``{{ runner.max_epochs }}`` works with or
without a schema, and a tune's ``model_parameters`` may set any of them.

Import checks, in order, each error naming the line, variable or parameter: the source can be read; the name
is free; the schema is a JSON Schema whose defaults fit its own rules; the Jinja syntax; every variable is one
the render provides (StrictUndefined: an unknown attribute is named at render); the rendered text is YAML with
TerraTorch's sections (``trainer``, ``data``, ``model`` with a ``class_path``); its outputs (default_root_dir,
logger save_dir, checkpoint dirpath) are in the tune's folder (``{{ run_dir }}``, ``{{ checkpoint_dir }}``) so a
tune keeps what it trains; and the config builds the way ``tune`` builds it (TerraTorch's LightningCLI:
trainer, datamodule and the model with random weights, offline), nothing trained.

Stored as ``<workspace>/templates/<id>/template.json`` (the Studio's TaskIn: name, description, purpose,
``extra_info {runtime_image, model_category (of the validation backbone), model_framework: terratorch-v2}``,
``model_params`` = its own schema, possibly empty, ``content_file``) + ``content.yaml.j2``. Plain YAML is a
template too: it renders as it is; its dataset paths may stay literal, its outputs must be the tune folder's
variables. ``delete`` (kind ``templates``) removes
one. ``template-export`` writes the TaskIn JSON with the content base64-encoded (the Studio's
``POST /v2/tune-templates`` body) or a zip of ``template.json`` + ``content.yaml.j2``; both import back.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, model_validator

from .. import protocol
from ..catalog import (USER_TEMPLATE_CONTENT, USER_TEMPLATE_RECORD, _name_key, find_backbone, find_template,
                       templates, user_template_schema, user_templates)
from ..protocol import EngineError, SpecError
from ..specs import ItemId, PathOrUrl, StudioModel
from ..workspace import Workspace, now_iso, write_json

RUNTIME_IMAGE = "quay.io/geospatial-studio/terratorch:latest"
VALIDATION_BACKBONE = "timm_resnet18"  # the model build's backbone when the import names none
SECTIONS = ("trainer", "data", "model")  # what a TerraTorch (LightningCLI) config must have
SOURCE_SUFFIXES = (".yaml", ".yml", ".j2", ".json", ".zip")
MAX_TEXT = 2_000_000
TYPES = ("object", "integer", "number", "boolean", "string", "array")


class TemplateImportSpec(StudioModel):
    name: str = Field(min_length=1, max_length=100, description="shown beside the built-ins; unique")
    description: str = Field(default="", max_length=10000)
    purpose: Optional[Literal["Segmentation", "Regression", "Other"]] = Field(
        default=None, description="default: the exported template's, else Other (takes any dataset)")
    content: Optional[str] = Field(default=None, max_length=MAX_TEXT, description="the YAML (or Jinja YAML) text")
    path: Optional[PathOrUrl] = Field(default=None, description=".yaml, .yml, .yaml.j2, or an export (.json, .zip)")
    parameter_schema: Optional[Union[dict[str, Any], PathOrUrl]] = Field(
        default=None, alias="schema", description="a JSON Schema object, or the path of a .json file holding one")
    dataset_id: ItemId = Field(min_length=1, description="the dataset the template is rendered against")
    backbone: Optional[str] = Field(default=None, max_length=200,
                                    description=f"the model build's backbone (default {VALIDATION_BACKBONE})")

    @model_validator(mode="after")
    def _one_source(self) -> "TemplateImportSpec":
        if (self.content is None) == (self.path is None):
            raise ValueError("give the template as exactly one of 'content' (its text) or 'path' (a file)")
        if self.path is not None and not self.path.lower().endswith(SOURCE_SUFFIXES):
            raise ValueError(f"path must end with one of {', '.join(SOURCE_SUFFIXES)}")
        if "\0" in (self.content or ""):
            raise ValueError("content holds a NUL character")
        return self


class TemplateExportSpec(StudioModel):
    id: str = Field(min_length=1, max_length=200, description="the template's id or name (user-defined or built-in)")
    output_path: PathOrUrl = Field(description="a .json file (the Studio's TaskIn, content base64) or a .zip")

    @model_validator(mode="after")
    def _suffix(self) -> "TemplateExportSpec":
        if not self.output_path.lower().endswith((".json", ".zip")):
            raise ValueError("output_path must end with .json or .zip")
        return self


# ------------------------------------------------------------------------------------------------ reading


def _unreadable(what: str, why: str) -> SpecError:
    return SpecError("template_file_unreadable", f"{what} cannot be read: {why}.",
                     "Give an existing UTF-8 file: a .yaml/.yaml.j2 template, a .json schema, or an export.")


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise _unreadable(f"{what} {path}", "there is no such file")
    try:
        if path.stat().st_size > MAX_TEXT:
            raise _unreadable(f"{what} {path}", f"it is larger than {MAX_TEXT} bytes")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(f"{what} {path}", str(exc)) from None


def _task_in(data: Any, where: str) -> dict[str, Any]:
    """An exported template (the Studio's TaskIn shape): its fields, the content decoded."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        raise _unreadable(where, "it is not an exported template (a JSON object with a base64 'content')")
    try:
        text = base64.b64decode(data["content"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _unreadable(where, "its 'content' is not base64 of UTF-8 text") from None
    return {"content": text, "model_params": data.get("model_params") or {}, "purpose": data.get("purpose"),
            "description": data.get("description", "")}


def read_source(spec: TemplateImportSpec) -> dict[str, Any]:
    """{content, model_params, purpose, description} from the spec's text, file or export."""
    if spec.content is not None:
        return {"content": spec.content, "model_params": None, "purpose": None, "description": ""}
    path = Path(str(spec.path)).expanduser()
    lower = path.name.lower()
    if lower.endswith(".zip"):
        if not path.is_file():
            raise _unreadable(f"template {path}", "there is no such file")
        try:
            with zipfile.ZipFile(path) as archive:
                record = json.loads(archive.read(USER_TEMPLATE_RECORD).decode("utf-8"))
                content = archive.read(str(record.get("content_file") or USER_TEMPLATE_CONTENT)).decode("utf-8")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
            raise _unreadable(f"template export {path}", f"not an exported template zip ({exc})") from None
        return {"content": content, "model_params": record.get("model_params") or {},
                "purpose": record.get("purpose"), "description": record.get("description", "")}
    text = _read_text(path, "template")
    if lower.endswith(".json"):
        try:
            return _task_in(json.loads(text), f"template export {path}")
        except ValueError as exc:
            raise _unreadable(f"template export {path}", f"it is not JSON ({exc})") from None
    return {"content": text, "model_params": None, "purpose": None, "description": ""}


def _schema_problem(schema: Any, where: str) -> Optional[str]:
    if not isinstance(schema, dict):
        return f"{where or 'the schema'} is {type(schema).__name__}, not a JSON object"
    kind = schema.get("type")
    if kind is not None and kind not in TYPES:
        return f"{where or 'the schema'} has type {kind!r}; types are {', '.join(TYPES)}"
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return f"{where + '.' if where else ''}properties is not an object"
    for key, prop in props.items():
        problem = _schema_problem(prop, f"{where}.{key}" if where else key)
        if problem:
            return problem
    return None


def read_schema(spec: TemplateImportSpec, source: dict[str, Any]) -> dict[str, Any]:
    """The template's own parameter schema ({} when none), checked as a JSON Schema of parameter groups."""
    given = spec.parameter_schema if spec.parameter_schema is not None else source["model_params"]
    if isinstance(given, str):
        path = Path(given).expanduser()
        try:
            given = json.loads(_read_text(path, "parameter schema"))
        except ValueError as exc:
            raise SpecError("template_schema_invalid", f"The parameter schema {path} is not JSON: {exc}.",
                            "Give a JSON Schema object (the Studio's model_params).") from None
    schema = copy.deepcopy(given or {})
    problem = _schema_problem(schema, "")
    if problem:
        raise SpecError("template_schema_invalid", f"The parameter schema is not usable: {problem}.",
                        "Give a JSON Schema object: properties of type object (groups) or integer, number, "
                        "boolean, string, each with its default.")
    return schema


# ------------------------------------------------------------------------------------------------ validating


def _defaults_fit(schema: dict[str, Any], purpose: str) -> dict[str, Any]:
    """The merged parameters (built-in defaults <- the schema's own defaults), each default checked by its rule."""
    from .render import merge_parameters, schema_defaults

    effective = user_template_schema(schema, purpose)
    try:
        return merge_parameters(effective, schema_defaults(schema))
    except SpecError as exc:
        raise SpecError("template_schema_invalid", "A default of the parameter schema breaks its own rule: "
                        + exc.message.replace("model_parameters.", "", 1),
                        "Fix the default (or the range) of the parameter named.") from None


def _template_line(exc: BaseException) -> Optional[int]:
    """The template line a render error happened on (Jinja maps its frames to "<template>")."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_text(text: str, context: dict[str, Any]) -> str:
    """Jinja (StrictUndefined) with the built-ins' variables; errors name the line and the variable."""
    import jinja2
    from jinja2 import meta

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)  # noqa: S701 - YAML, not HTML
    lines = text.splitlines()
    try:
        ast = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        shown = lines[exc.lineno - 1].strip() if 0 < (exc.lineno or 0) <= len(lines) else ""
        raise SpecError("template_syntax", f"Jinja syntax error at line {exc.lineno}: {exc.message}"
                        + (f" (in: {shown[:120]})" if shown else "") + ".",
                        "Fix the Jinja tags on that line ({{ ... }}, {% ... %}), or give plain YAML.") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - set(context) - set(env.globals))
    if unknown:
        where = []
        for name in unknown:
            pattern = re.compile(r"\b" + re.escape(name) + r"\b")
            line = next((i for i, text_line in enumerate(lines, 1) if pattern.search(text_line)), "?")
            where.append(f"{name} (line {line})")
        raise SpecError("template_undefined", f"The template uses undefined variable(s): {', '.join(where)}.",
                        "Use the variables the built-in templates use: " + ", ".join(sorted(context)))
    try:
        return env.from_string(text).render(**context)
    except jinja2.UndefinedError as exc:
        line = _template_line(exc)
        raise SpecError("template_undefined", f"The template uses something undefined at line {line}: {exc.message}.",
                        "Use the variables (and their keys) the built-in templates use: "
                        + ", ".join(sorted(context))) from None
    except Exception as exc:  # noqa: BLE001 - a filter or expression failing on these values
        line = _template_line(exc)
        raise SpecError("template_error", f"The template could not be rendered (line {line}): "
                        f"{type(exc).__name__}: {exc}.", "Fix the expression on that line.") from None


def _not_config(message: str, hint: str = "") -> SpecError:
    return SpecError("template_not_terratorch", message, hint or "A TerraTorch config (what `terratorch fit -c` "
                     "reads) has the sections trainer, data and model, each with class_path/init_args where "
                     "TerraTorch's examples have them.")


def parse_config(rendered: str) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(rendered)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at rendered line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise _not_config(f"The rendered template is not YAML{line}: {getattr(exc, 'problem', None) or exc}.",
                          "Fix the YAML (indentation, quoting) on that line of the rendered text.") from None
    if not isinstance(config, dict):
        raise _not_config(f"The rendered template is YAML but a {type(config).__name__}, not a TerraTorch config.")
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise _not_config(f"The rendered YAML is not a TerraTorch config: it lacks the section(s) "
                          f"{', '.join(missing)} (it has {', '.join(map(str, config)) or 'nothing'}).")
    for section in ("model", "data"):
        if not isinstance(config[section], dict) or not isinstance(config[section].get("class_path"), str):
            raise _not_config(f"The rendered config's {section} section has no class_path (the task or datamodule "
                              "class TerraTorch builds).")
    if not isinstance(config["trainer"], dict):
        raise _not_config("The rendered config's trainer section is not a mapping of Lightning Trainer arguments.")
    return config


def _under(path: Any, root: Path) -> bool:
    try:
        return isinstance(path, str) and Path(path).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def check_outputs(config: dict[str, Any], run_dir: Path) -> None:
    """What a tune writes must land in its own folder: it keeps the best checkpoint and the log from there."""
    trainer = config["trainer"]
    hint = ("Write {{ run_dir }} for trainer.default_root_dir and the logger's save_dir, and {{ checkpoint_dir }} "
            "for the checkpoint callback's dirpath.")
    found: list[tuple[str, Any]] = []
    if trainer.get("default_root_dir") is not None:
        found.append(("trainer.default_root_dir", trainer["default_root_dir"]))
    loggers = trainer.get("logger")
    for i, logger in enumerate(loggers if isinstance(loggers, list) else [loggers]):
        if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict) and "save_dir" in logger["init_args"]:
            found.append((f"trainer.logger{f'[{i}]' if isinstance(loggers, list) else ''}.init_args.save_dir",
                          logger["init_args"]["save_dir"]))
    checkpoints = False
    for i, callback in enumerate(trainer.get("callbacks") or []):
        args = callback.get("init_args") if isinstance(callback, dict) else None
        if isinstance(args, dict) and "dirpath" in args:
            found.append((f"trainer.callbacks[{i}].init_args.dirpath", args["dirpath"]))
            checkpoints = checkpoints or "Checkpoint" in str(callback.get("class_path", ""))
    for where, value in found:
        if not _under(value, run_dir):
            raise SpecError("template_outputs", f"{where} is {value!r}, outside the tune's folder: a tune keeps "
                            "its checkpoint and log only from there.", hint)
    if not checkpoints and trainer.get("default_root_dir") is None:
        raise SpecError("template_outputs", "The config says neither where checkpoints go (a ModelCheckpoint "
                        "callback's dirpath) nor trainer.default_root_dir, so they would land in the engine's "
                        "working folder.", hint)


def _build_problem(text: str) -> str:
    """jsonargparse's report, less its Union boilerplate: the lines that say what is wrong."""
    lines = [l.strip().lstrip("- ").strip() for l in text.splitlines()]
    keep = [l for l in lines if l and not l.startswith(("Given value", "Subtypes:", "Errors:", "Expected a <class "
                                                        "'NoneType'>", "Does not validate against any of the Union"))]
    return "; ".join(keep)[:800] or text[:800]


def build_config(config: dict[str, Any], folder: Path) -> str:
    """Build trainer, datamodule and model as ``tune`` does (``train.fit``'s LightningCLI), nothing trained."""
    import yaml

    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    from terratorch.cli_tools import MyLightningCLI, MyTrainer
    from torchgeo.trainers import BaseTask

    try:
        cli = MyLightningCLI(model_class=BaseTask, subclass_mode_model=True, subclass_mode_data=True,
                             seed_everything_default=0, save_config_callback=None, args=["--config", str(path)],
                             run=False, trainer_class=MyTrainer, parser_kwargs={"exit_on_error": False})
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - jsonargparse and the task report every problem so
        raise SpecError("template_build_failed", "The rendered config does not build: "
                        f"{_build_problem(str(exc)) or type(exc).__name__}.",
                        "Fix the part named (a registry name, an argument the class does not take, a wrong type); "
                        "`terratorch fit -c` would stop there too.") from None
    return f"{type(cli.model).__module__}.{type(cli.model).__name__}"


def validate(text: str, schema: dict[str, Any], purpose: str, dataset: dict[str, Any], dataset_dir: Path,
             backbone: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Everything import checks (module docstring); returns facts for the record."""
    from .render import build_context

    params = _defaults_fit(schema, purpose)
    check_dataset({"name": "(the new template)", "purpose": purpose}, dataset)
    run_dir = scratch / "run"
    run_dir.mkdir()
    context = build_context(tune_id="template-check", params=params, dataset=dataset, dataset_dir=dataset_dir,
                            backbone=backbone, run_dir=run_dir,
                            trainer={"accelerator": "cpu", "devices": 1, "precision": "32"}, seed=0)
    protocol.progress("render", 0.2, f"rendering against dataset {dataset['dataset_id']}")
    rendered = render_text(text, context)
    config = parse_config(rendered)
    check_outputs(config, run_dir)
    protocol.progress("build", 0.4, f"building the model with {backbone['name']} (random weights, nothing trained)")
    model_class = build_config(config, scratch)
    import jinja2
    from jinja2 import meta

    used = sorted(meta.find_undeclared_variables(jinja2.Environment().parse(text)))
    return {"dataset_id": dataset["dataset_id"], "backbone": backbone["name"], "model_class": model_class,
            "variables": used, "validated": now_iso()}


def check_dataset(template: dict[str, Any], dataset: dict[str, Any]) -> None:
    """A user template's one rule at tune time: its purpose is the dataset's, unless it is "Other"."""
    purpose = template.get("purpose") or "Other"
    if purpose not in ("Other", dataset["purpose"]):
        raise SpecError("purpose_mismatch", f"Template '{template['name']}' is for {purpose} but dataset "
                        f"{dataset['dataset_id']} is for {dataset['purpose']}.",
                        f"Pick a template for {dataset['purpose']} (or purpose Other), or another dataset.")


def check_tune(template: dict[str, Any], backbone: dict[str, Any], dataset: dict[str, Any],
               params: dict[str, Any]) -> None:
    """``tune``'s check for a user template (``compatibility.check`` for the built-ins)."""
    check_dataset(template, dataset)


# ------------------------------------------------------------------------------------------------ commands


def _name_taken(name: str, workspace: Workspace) -> Optional[str]:
    for item in templates() + user_templates(workspace):
        if _name_key(name) == _name_key(item["name"]) or name == item["id"]:
            return f"{item['id']} ({item['name']})"
    return None


def import_template(spec: TemplateImportSpec, workspace: Workspace) -> dict[str, Any]:
    from .dataset_record import load_dataset

    protocol.progress("read", 0.02, "reading the template")
    source = read_source(spec)
    taken = _name_taken(spec.name, workspace)
    if taken:
        raise SpecError("template_name_taken", f"A template named '{spec.name}' exists already: {taken}.",
                        "Give another name, or delete that user template first.")
    schema = read_schema(spec, source)
    purpose = spec.purpose or (source["purpose"] if source["purpose"] in ("Segmentation", "Regression") else "Other")
    _defaults_fit(schema, purpose)  # before the dataset is read: a schema is wrong on any dataset
    dataset, dataset_dir = load_dataset(workspace, spec.dataset_id)
    backbone = find_backbone(spec.backbone or VALIDATION_BACKBONE)
    with workspace.lock("datasets", spec.dataset_id), workspace.scratch("template-check") as scratch:
        facts = validate(source["content"], schema, purpose, dataset, dataset_dir, backbone, scratch)
    template_id = workspace.new_id("templates", spec.name)
    record = {
        "id": template_id, "name": spec.name, "description": spec.description or source["description"],
        "purpose": purpose, "content_file": USER_TEMPLATE_CONTENT, "model_params": schema,
        # model_category: the family it was validated with, what the Fine-tuning dock filters backbones by (the
        # engine itself takes any backbone for a user template)
        "extra_info": {"runtime_image": RUNTIME_IMAGE, "model_category": backbone["model_params"]["model_category"],
                       "model_framework": "terratorch-v2"},
        "dataset_id": None, "user_defined": True, "tune_type": "user-defined", "created": now_iso(),
        "validation": facts,
    }
    protocol.progress("store", 0.95, f"storing template {template_id}")
    with workspace.staging("templates", template_id) as stage:
        (stage / USER_TEMPLATE_CONTENT).write_text(source["content"], encoding="utf-8")
        write_json(stage / USER_TEMPLATE_RECORD, record)
    protocol.progress("done", 1.0, f"template '{spec.name}' imported as {template_id}")
    return record


def run_import(spec: TemplateImportSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = import_template(spec, workspace)
    folder = workspace.root / "templates" / record["id"]
    return ({"template_dir": str(folder), "record": str(folder / USER_TEMPLATE_RECORD)},
            {k: record[k] for k in ("id", "name", "purpose", "user_defined", "model_params", "validation")})


def task_in(template: dict[str, Any]) -> dict[str, Any]:
    """The Studio's TaskIn (``POST /v2/tune-templates``): the content base64-encoded."""
    from ..catalog import template_text

    extra = {k: v for k, v in template.get("extra_info", {}).items()}
    own = template.get("own_model_params", template.get("model_params")) or {}
    return {"name": template["name"], "description": template.get("description", ""),
            "purpose": template.get("purpose", "Other"),
            "content": base64.b64encode(template_text(template).encode("utf-8")).decode("ascii"),
            "model_params": own, "extra_info": extra, "dataset_id": None}


def _check_output(target: Path) -> None:
    if target.is_dir():
        raise EngineError("output_path_unusable", f"output_path {target} is an existing folder.",
                          f"Give a file path, such as {target / 'template.json'}.")
    if not target.parent.is_dir():
        raise EngineError("output_path_unusable", f"output_path {target}: the folder {target.parent} does not exist.",
                          "Give a file path in an existing folder.")


def run_export(spec: TemplateExportSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..catalog import template_text

    template = find_template(spec.id, workspace)
    target = Path(spec.output_path).expanduser().resolve()
    _check_output(target)
    body = task_in(template)
    tmp = target.with_name(f".{target.name}.part")
    try:
        if target.suffix.lower() == ".zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                record = {k: v for k, v in body.items() if k != "content"}
                archive.writestr(USER_TEMPLATE_RECORD, json.dumps({**record, "content_file": USER_TEMPLATE_CONTENT},
                                                                  indent=2, ensure_ascii=False))
                archive.writestr(USER_TEMPLATE_CONTENT, template_text(template))
            tmp.write_bytes(buffer.getvalue())
        else:
            tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EngineError("output_path_unusable", f"output_path {target} cannot be written ({exc}).",
                          "Give a file path in a folder you can write to.") from None
    protocol.progress("done", 1.0, f"template '{template['name']}' exported to {target}")
    return {"path": str(target)}, {"id": template["id"], "name": template["name"],
                                   "user_defined": bool(template.get("user_defined")), "format": target.suffix[1:]}
