"""The model registry: ``export-model`` (a finished tune -> one zip) and ``import-model`` (that zip, or the Studio's
completed-tune form: ``config_deploy.yaml`` + a state-dict checkpoint). Deleting a model is ``delete`` of a tune.

The zip holds ``tune.json``, ``model_card.json``, ``MODEL_CARD.md``, ``config.yaml``, ``config_deploy.yaml`` and the
best checkpoint (never ``last.ckpt``), under the names ``tune.json`` gives them, plus ``geostudio_model.json``
(what it is). An imported model is a finished tune (status ``Finished``, ``imported_from`` saying from what), so
``infer`` and the Inference dock use it as any other. Everything is checked before the model appears: the zip's
member names (no ``..``, no absolute paths, no links), the record's fields, the config (YAML with ``model`` and
``data``) and the checkpoint (torch reads it, and it fits the model the config builds).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from pydantic import Field, model_validator

from . import protocol
from .protocol import EngineError, SpecError
from .specs import ID_PATTERN, MAX_ID, DisplayName, ItemId, PathOrUrl, StudioModel
from .tuning.model_card import CARD_JSON, CARD_MD, build_card, write_card
from .workspace import Workspace, now_iso, write_json

MANIFEST = "geostudio_model.json"
FORMAT = "geostudio-model"
REQUIRED = ("tune_id", "name", "classes", "checkpoint", "deploy_config")  # what inference reads of tune.json
PALETTE = ["#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a", "#fb9a99",
           "#fdbf6f", "#cab2d6", "#ffff99"]


class ExportModelSpec(StudioModel):
    tune_id: ItemId = Field(min_length=1)
    output_path: Optional[str] = Field(default=None, min_length=1, max_length=4096)  # default <ws>/exports/<id>.zip


class ImportModelSpec(StudioModel):
    """Our zip (``archive``), or the Studio's upload-completed-tunes payload with local paths or file:// URLs."""

    archive: Optional[PathOrUrl] = None
    tune_config_url: Optional[PathOrUrl] = None
    tune_checkpoint_url: Optional[PathOrUrl] = None
    name: Optional[DisplayName] = None
    description: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _one_form(self) -> "ImportModelSpec":
        studio = (self.tune_config_url, self.tune_checkpoint_url)
        if self.archive and any(studio):
            raise ValueError("give either archive (a model zip) or tune_config_url and tune_checkpoint_url, not both")
        if not self.archive and not all(studio):
            raise ValueError("give archive (a model zip made by export-model), or both tune_config_url "
                             "(config_deploy.yaml) and tune_checkpoint_url (the state-dict checkpoint)")
        return self


# ------------------------------------------------------------------------------------------------------ export
def export_model(spec: ExportModelSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    from .inference.infer import check_output_path, find_tune

    record, _ = find_tune(workspace, spec.tune_id)
    target = (Path(spec.output_path).expanduser().absolute() if spec.output_path
              else workspace.root / "exports" / f"{record['tune_id']}.zip")
    check_output_path(target)
    with workspace.lock("tunes", record["tune_id"]):  # delete waits until the zip is written
        record, folder = find_tune(workspace, record["tune_id"])
        members = {"tune.json": folder / "tune.json"}
        for name in (record.get("config"), record["deploy_config"], record["checkpoint"]):
            if name:
                members[str(PurePosixPath(*Path(name).parts))] = folder / name
        card = None
        if (folder / CARD_JSON).is_file() and (folder / CARD_MD).is_file():
            members[CARD_JSON], members[CARD_MD] = folder / CARD_JSON, folder / CARD_MD
        else:  # a tune finished before model cards: its card from the record (no test evaluation)
            card = build_card(record, note="made at export from tune.json (the tune predates model cards)")
        missing = [str(p) for p in members.values() if not p.is_file()]
        if missing:
            raise EngineError("record_invalid", f"Tune {record['tune_id']} lacks {', '.join(missing)}.",
                              "The tune folder was changed by hand: restore the files, or fine-tune again.")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part-{os.getpid()}")
        protocol.progress("export", 0.1, f"writing {target.name}")
        try:
            with zipfile.ZipFile(part, "w") as archive:
                archive.writestr(MANIFEST, json.dumps({"format": FORMAT, "version": 1, "tune_id": record["tune_id"],
                                                       "name": record["name"], "exported": now_iso(),
                                                       "files": sorted(members)}, indent=2))
                for name, path in members.items():
                    compress = zipfile.ZIP_STORED if name == record["checkpoint"] else zipfile.ZIP_DEFLATED
                    archive.write(path, name, compress_type=compress)
                if card is not None:
                    from .tuning.model_card import markdown

                    archive.writestr(CARD_JSON, json.dumps(card, indent=2))
                    archive.writestr(CARD_MD, markdown(card))
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
    files = sorted(set(members) | {MANIFEST, CARD_JSON, CARD_MD})
    protocol.progress("done", 1.0, f"model {record['tune_id']} exported to {target}")
    return ({"archive": str(target)},
            {"tune_id": record["tune_id"], "name": record["name"], "archive": str(target),
             "bytes": target.stat().st_size, "files": files})


# ------------------------------------------------------------------------------------------------------ import
def _local(value: str, field: str) -> Path:
    parsed = urlparse(value)
    windows_drive = len(parsed.scheme) == 1 and value[1:3] in (":\\", ":/")
    if parsed.scheme not in ("", "file") and not windows_drive:
        raise SpecError("remote_url", f"{field} {value} is not a local file.",
                        "Download it first, then give its path (or a file:// URL).")
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else value).expanduser()
    if not path.is_file():
        raise SpecError("model_file_missing", f"{field}: {path} does not exist or is not a file.", "Check the path.")
    return path.absolute()


def _bad_archive(path: Path, why: str) -> EngineError:
    return EngineError("model_archive_invalid", f"The model zip {path} {why}.",
                       "Export the model again with export-model, or import the Studio's form "
                       "(tune_config_url and tune_checkpoint_url).")


def _safe_name(info: zipfile.ZipInfo) -> Optional[str]:
    """Why a member cannot be unpacked safely, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the folder (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if "\0" in name:
        return "holds a NUL character"
    return None


def read_config(path: Path, label: str) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EngineError("model_config_invalid", f"{label} ({path.name}) is not readable YAML: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                          "Give the tune's config_deploy.yaml as TerraTorch wrote it.") from None
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)
            and isinstance(config.get("data"), dict)
            and isinstance(config["model"].get("init_args"), dict) and config["model"].get("class_path")
            and isinstance(config["data"].get("init_args"), dict)):
        raise EngineError("model_config_invalid", f"{label} ({path.name}) lacks a model or data section with "
                          "class_path and init_args.", "Give the tune's config_deploy.yaml as TerraTorch wrote it.")
    data = config["data"]["init_args"]

    def stats(value: Any) -> bool:  # a list, or (multi-modal datamodule) a list per modality
        return isinstance(value, list) or (isinstance(value, dict) and bool(value)
                                           and all(isinstance(v, list) for v in value.values()))

    if not (stats(data.get("means")) and stats(data.get("stds"))
            and isinstance(data.get("means"), dict) == isinstance(data.get("stds"), dict)):
        raise EngineError("model_config_invalid", f"{label} ({path.name}) lacks data.init_args.means and stds "
                          "(the normalisation inference needs: lists, or one list per modality).",
                          "Give the tune's config_deploy.yaml.")
    return config


def check_checkpoint(path: Path, label: str) -> None:
    """torch reads it with ``weights_only=True`` and it holds a state dict of tensors. Only weights are loaded from
    an imported file: unpickling other objects could run code from it."""
    import pickle

    import torch

    def bad(why: str) -> EngineError:
        return EngineError("model_checkpoint_invalid", f"{label} ({path.name}) {why}.",
                           "Give the tune's state-dict checkpoint (best-state_dict-*.ckpt), as TerraTorch saved it.")

    try:  # an imported file is not trusted: loading arbitrary pickled objects would run code from it
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise bad("holds Python objects besides weights, which GeoStudio does not load from an imported file "
                      "(they could run code)") from None
        raise bad(f"is not a checkpoint torch can read ({type(exc).__name__}: {str(exc)[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise bad(f"is not a checkpoint torch can read ({type(exc).__name__}: {str(exc)[:200]})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise bad("holds no state dict of weights")


def check_fits(folder: Path, record: dict[str, Any], config: dict[str, Any]) -> None:
    """The model the config builds takes the checkpoint's weights (checkpoint_mismatch otherwise)."""
    from .inference.predict import load_task

    protocol.progress("check", 0.6, "building the model and loading the checkpoint")
    load_task(config, folder, record, "cpu")


def _unpack(path: Path, stage: Path) -> tuple[dict[str, Any], list[str]]:
    """Check the zip, unpack what a model needs into ``stage``; (the record, what was left out)."""
    if not zipfile.is_zipfile(path):
        raise _bad_archive(path, "is not a zip file")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        seen: set[str] = set()
        for info in infos:
            why = _safe_name(info)
            if why:
                raise _bad_archive(path, f"has a member that {why}: {info.filename!r}; nothing was imported")
            if info.filename in seen:
                raise _bad_archive(path, f"holds {info.filename!r} twice")
            seen.add(info.filename)
        names = {i.filename: i for i in infos if not i.is_dir()}
        if "tune.json" not in names:
            raise _bad_archive(path, "lacks tune.json (the model's record) at its top level")
        try:
            record = json.loads(archive.read("tune.json").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _bad_archive(path, f"has a tune.json that is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise _bad_archive(path, "has a tune.json that is not a JSON object")
        missing = [k for k in REQUIRED if not record.get(k) and not isinstance(record.get(k), list)]
        if missing:
            raise _bad_archive(path, f"has a tune.json that lacks {', '.join(missing)}")
        if record.get("status", "Finished") != "Finished":
            raise _bad_archive(path, f"holds a tune that is {record.get('status')}, not a finished model")
        wanted = {str(record["checkpoint"]), str(record["deploy_config"]), "tune.json", CARD_JSON, CARD_MD,
                  str(record.get("config") or "config.yaml"), "metrics.csv"}
        for field in ("checkpoint", "deploy_config"):
            if str(record[field]) not in names:
                raise _bad_archive(path, f"lacks {record[field]} (tune.json's {field})")
        left_out = sorted(n for n in names if n not in wanted and n != MANIFEST)
        for name in sorted(wanted & set(names)):
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(names[name]) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
    return record, left_out


def _studio_record(config: dict[str, Any], checkpoint_name: str, name: str, description: str
                   ) -> tuple[dict[str, Any], list[str]]:
    """A tune record derived from a Studio deploy config (and the notes on what it could not derive)."""
    from .inference.input_spec import input_specs
    from .tuning.tune import geoserver_style

    notes: list[str] = []
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    model_args = model.get("model_args") or {}
    regression = "Regression" in str(config["model"]["class_path"])
    names = model.get("class_names")
    count = model_args.get("num_classes") or data.get("num_classes") or (len(names) if names else None)
    classes = []
    if not regression:
        if not count:
            raise EngineError("model_config_invalid", "The deploy config names no classes (model.init_args."
                              "class_names, model_args.num_classes or data.init_args.num_classes).",
                              "Give the tune's config_deploy.yaml as TerraTorch wrote it.")
        if not names:
            names = [f"class {k}" for k in range(int(count))]
            notes.append("class names are not in config_deploy.yaml: named 'class 0' ... by index")
        classes = [{"index": k, "id": k, "name": str(n), "color": PALETTE[k % len(PALETTE)], "opacity": 1.0}
                   for k, n in enumerate(names)]
        notes.append("label values are taken as the class indices 0..N-1 (the deploy config does not keep the "
                     "dataset's label ids)")
        notes.append("class colours are not in config_deploy.yaml: a default palette was given")
    spec, data_spec = input_specs(data)
    for entry in spec:
        which = f"modality {entry['modality_tag']}: " if entry["modality_tag"] else ""
        if not all(b["band_name"] for b in entry["bands"]):
            notes.append(f"{which}band names are not in config_deploy.yaml: the model reads file bands "
                         f"{', '.join(str(b['index'] + 1) for b in entry['bands'])} by position")
        if not isinstance(data.get("output_bands"), (list, dict)):
            notes.append(f"{which}data.init_args.output_bands is not set: the first len(means) bands are read")
        if not entry["file_suffix"] and len(spec) > 1:
            notes.append(f"{which}no file suffix in config_deploy.yaml (image_grep): inference matches its "
                         "rasters to the modalities by their order")
    notes.append("connector, collection and the bands' RGB roles and scaling factors are not in "
                 "config_deploy.yaml: model_input_data_spec leaves them empty")
    if model_args.get("backbone_pretrained"):
        notes.append("backbone_pretrained set to false: the checkpoint holds every weight")
    if "ignore_index" not in model:
        notes.append("no ignore_index in the config")
    notes.append("no dataset, template, training history or test metrics come with this form")
    record = {
        "tune_id": "", "name": name, "description": description, "status": "Finished", "created": now_iso(),
        "dataset_id": None, "dataset_name": None, "purpose": "Regression" if regression else "Segmentation",
        "base_model_id": model_args.get("backbone"), "tune_template_id": None, "model_parameters": {},
        "train_options": {}, "trainer": None, "device": None, "seconds": None, "epochs_run": None,
        "best_val_loss": None, "test_metrics": {}, "history": [], "checkpoint": f"checkpoints/{checkpoint_name}",
        "config": None, "deploy_config": "config_deploy.yaml", "log": None,
        "model_input_data_spec": spec, "data_spec": data_spec,
        "classes": classes, "ignore_id": model.get("ignore_index"),
        "tiled_inference_parameters": model.get("tiled_inference_parameters"),
        "geoserver_push": geoserver_style(classes) if classes else [],
        "weights": {"origin": "imported"}, "resumable": False, "pid": None,
    }
    return record, notes


def import_model(spec: ImportModelSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    protocol.progress("check", 0.05, "checking the model files")
    if spec.archive:
        source = _local(spec.archive, "archive")
        try:  # the zip's own id is kept where it is free (checked in full below)
            with zipfile.ZipFile(source) as archive:
                peek = json.loads(archive.read("tune.json").decode("utf-8"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, RuntimeError):
            peek = {}
        peek = peek if isinstance(peek, dict) else {}
        wanted = str(peek.get("tune_id") or "")
        if len(wanted) > MAX_ID or not ID_PATTERN.fullmatch(wanted):
            wanted = ""
        name = spec.name or str(peek.get("name") or "") or source.stem
    else:
        config_path = _local(spec.tune_config_url, "tune_config_url")
        checkpoint_path = _local(spec.tune_checkpoint_url, "tune_checkpoint_url")
        source = config_path
        wanted = ""
        name = spec.name or config_path.parent.name or "imported-model"
    tune_id = wanted if wanted and workspace.find("tunes", wanted) is None else workspace.new_id("tunes", name)
    with workspace.staging("tunes", tune_id) as stage:
        if spec.archive:
            record, left_out = _unpack(source, stage)
            config = read_config(stage / record["deploy_config"], f"The deploy config in {source.name}")
            check_checkpoint(stage / record["checkpoint"], f"The checkpoint in {source.name}")
            notes = [f"left out of the zip: {', '.join(left_out)}"] if left_out else []
            original = record["tune_id"]
            record.update({"tune_id": tune_id, "pid": None})
            if spec.name:
                record["name"] = spec.name
            if spec.description:
                record["description"] = spec.description
            if record.get("config") and not (stage / record["config"]).is_file():
                record["config"] = None
            if not record.get("model_input_data_spec"):  # a zip made before it: derived from the deploy config
                from .inference.input_spec import model_input_data_spec

                record["model_input_data_spec"] = model_input_data_spec(config["data"]["init_args"])
                notes.append("model_input_data_spec was not in the zip's tune.json: derived from config_deploy.yaml")
            imported = {"form": "zip", "path": str(source), "original_tune_id": original, "imported": now_iso(),
                        "notes": notes}
        else:
            config = read_config(config_path, "tune_config_url")
            check_checkpoint(checkpoint_path, "tune_checkpoint_url")
            record, notes = _studio_record(config, checkpoint_path.name, name, spec.description)
            record["tune_id"] = tune_id
            if (config["model"]["init_args"].get("model_args") or {}).get("backbone_pretrained"):
                config["model"]["init_args"]["model_args"]["backbone_pretrained"] = False
                import yaml

                (stage / "config_deploy.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            else:
                shutil.copyfile(config_path, stage / "config_deploy.yaml")
            (stage / "checkpoints").mkdir()
            shutil.copyfile(checkpoint_path, stage / record["checkpoint"])
            imported = {"form": "studio", "path": str(config_path), "config": str(config_path),
                        "checkpoint": str(checkpoint_path), "imported": now_iso(), "notes": notes}
        check_fits(stage, record, read_config(stage / record["deploy_config"], "config_deploy.yaml"))
        record["imported_from"] = imported
        card_path = stage / CARD_JSON
        try:
            card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
        except (OSError, UnicodeDecodeError, ValueError):
            card = None
        if isinstance(card, dict):
            card.update({"tune_id": tune_id, "name": record["name"], "imported_from": imported})
        else:
            card = build_card(record, note="imported without a test evaluation (" + (
                "the zip held no model card)" if spec.archive else "the Studio's form carries no test data)"))
        record["model_card"] = write_card(stage, card)
        write_json(stage / "tune.json", record)
    for note in imported["notes"]:
        protocol.log(f"import-model: {note}", "warning" if "not" in note else "info")
    folder = workspace.dir("tunes") / tune_id
    protocol.progress("done", 1.0, f"model {tune_id} imported")
    return ({"tune_dir": str(folder), "checkpoint": str(folder / record["checkpoint"]),
             "deploy_config": str(folder / record["deploy_config"]), "model_card": str(folder / CARD_JSON)},
            {"tune_id": tune_id, "name": record["name"], "status": "Finished", "purpose": record.get("purpose"),
             "imported_from": imported["form"], "notes": imported["notes"], "classes": record["classes"]})
