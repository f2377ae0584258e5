"""Every error code the engine can emit, in one table: exit status, what it means, what the user does.

Standard library only, so the QGIS side, the tests and the README generator read it without the
engine's environment. ``protocol.EngineError`` takes its default exit status from here, and the
README's error table is ``markdown_table()`` (a test checks the two agree, and that every code the
source raises is here).

The Studio's dataset factory numbers its errors (``0001`` ... ``0012``); those errors have names here
and carry the number as ``studio_code`` in the error event and in failure records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .wire import EXIT_CANCELLED, EXIT_EXTERNAL, EXIT_INPUT, EXIT_INTERNAL, EXIT_INVALID_SPEC, EXIT_USAGE


@dataclass(frozen=True)
class ErrorCode:
    code: str
    exit: int
    meaning: str
    action: str
    studio_code: Optional[str] = None  # the Studio's dataset-factory number, where it has one


_U, _S, _I, _E = EXIT_USAGE, EXIT_INVALID_SPEC, EXIT_INPUT, EXIT_EXTERNAL

_TABLE = [
    # the command line and the spec
    ErrorCode("no_command", _U, "No command was given.", "Name one of the commands (`scripts/engine --help`)."),
    ErrorCode("usage", _U, "The command line is not valid: an unknown command or option, a missing or extra argument.",
              "Use `scripts/engine --help` for the commands and their arguments."),
    ErrorCode("spec_unreadable", _U, "The spec file cannot be read.",
              "Check the path and that it is a UTF-8 text file."),
    ErrorCode("spec_not_json", _U, "The spec is not valid JSON.", "Fix the JSON syntax at the line and column named."),
    ErrorCode("invalid_spec", _S, "The spec does not validate; `details` names each bad field.",
              "Fix the named fields."),
    ErrorCode("workspace_unusable", _I, "The workspace folder cannot be created or written.",
              "Choose a folder you can write to (--workspace, GEOSTUDIO_WORKSPACE or GeoStudio > Settings)."),
    ErrorCode("not_found", _S, "`delete` names an item the workspace does not hold.", "Refresh the list."),
    ErrorCode("in_use", _I, "`delete` names an item a running job uses (a dataset being trained on, a model "
              "running, an item being built); the message names the job (command, pid, host, since when).",
              "Wait for that job to finish or cancel it; a dead job's lock clears by itself."),
    ErrorCode("record_invalid", _I, "An item's record (`dataset.json`, `tune.json`) is broken JSON or lacks a "
              "field (changed by hand); the message names the file and the fields.",
              "Restore the file, or delete the item and create it again."),
    ErrorCode("cancelled", EXIT_CANCELLED, "The command was stopped (SIGTERM/SIGINT); unfinished outputs were "
              "removed (a tune past its first epoch is kept as Cancelled, with its last checkpoint).",
              "Nothing; run it again when you want, or Resume a kept tune."),
    ErrorCode("internal_error", EXIT_INTERNAL, "A bug in GeoStudio; the traceback is in the engine log.",
              "Report it with the engine log."),
    ErrorCode("no_gpu", _S, "The `device` setting asks for a GPU that torch does not see.",
              "Use device `auto` or `cpu`, or check the GPU driver; the message says what torch sees."),
    # catalog
    ErrorCode("terrakit_missing", _I, "Terrakit is not installed in the engine environment.",
              "Rebuild the engine environment (GeoStudio > Settings > Set up engine, or `make engine`)."),
    ErrorCode("catalog_file_invalid", _I, "`<workspace>/catalog/collections.json` is not valid.",
              "Fix or remove that file."),
    # connectors
    ErrorCode("unknown_connector", _S, "The connector is not in the catalog.", "Use one the message lists."),
    ErrorCode("unknown_collection", _S, "The connector has no such collection.", "Use one the message lists."),
    ErrorCode("unknown_band", _S, "The collection has no such band.", "Use the band names the message lists."),
    ErrorCode("bands_required", _S, "No bands were named and the collection has no R/G/B bands to default to.",
              "Name the bands."),
    ErrorCode("endpoint_not_supported", _S, "This connector cannot be redirected to another endpoint.",
              "Clear its endpoint setting."),
    ErrorCode("credentials_missing", _I, "The connector needs credentials that are not set.",
              "Set them in GeoStudio > Connectors > Credentials…."),
    ErrorCode("credentials_rejected", _E, "The service refused the credentials.",
              "Check or renew them in GeoStudio > Connectors > Credentials…."),
    ErrorCode("no_data", _I, "The connector found nothing for the area and dates.",
              "Widen the dates or the area, or raise the maximum cloud cover."),
    ErrorCode("invalid_request", _I, "The service refused the request as invalid.",
              "Check the collection, bands, dates and area."),
    ErrorCode("connector_timeout", _E, "The service did not answer in time.",
              "Try again later; check network and proxy."),
    ErrorCode("connector_refused", _E, "The service cannot be reached.",
              "Check the endpoint URL, the network and the proxy settings."),
    ErrorCode("connector_server", _E, "The service answered with a server error.", "Try again later."),
    ErrorCode("connector_truncated", _E, "A download broke off or was unreadable.", "Try again later."),
    ErrorCode("connector_http_error", _E, "The connection test got an unexpected HTTP answer.",
              "Check the endpoint URL; the message has the status."),
    ErrorCode("connector_other", _E, "The connector failed in another way; the message has the detail.",
              "See the engine log."),
    # datasets: the Studio's dataset-factory codes
    ErrorCode("dataset_source", _I, "The dataset source cannot be obtained (missing folder, bad archive, failed "
              "download, no imagery for the labels).", "Check `dataset_url` or the connector settings.", "0001"),
    ErrorCode("dataset_files", _I, "Files cannot be found or read (no file with a suffix, two files for a stem, "
              "an unreadable GeoTIFF).", "Check the suffixes against the file names; replace broken files.", "0002"),
    ErrorCode("dataset_dimensions", _I, "An image and its label differ in size, CRS or grid, or a scene is smaller "
              "than the smallest a model template takes (32 pixels a side).",
              "Re-export them on one grid.", "0003"),
    ErrorCode("dataset_pairing", _I, "Images and labels do not pair up by stem.",
              "Add the missing files or remove the extra ones.", "0004"),
    ErrorCode("dataset_split", _I, "The split leaves a split empty.",
              "Add samples, set `onboarding_options.chip_size`, or change `onboarding_options.split`.", "0005"),
    ErrorCode("dataset_bands", _I, "A band index is out of range, or a band has no valid pixel, or one value only, "
              "in the training split (it cannot be normalised).",
              "Fix the 0-based band indices of the data source.", "0007"),
    ErrorCode("dataset_write", _I, "Writing the dataset's GeoTIFFs (COG) failed.",
              "Check the free space and permissions of the workspace.", "0008"),
    ErrorCode("dataset_params", _I, "Label values or options do not fit the label categories.",
              "Add a label category per value, or set `onboarding_options.ignore_id`.", "0011"),
    ErrorCode("dataset_too_large", _I, "Without `chip_size`, a scene needs more memory as one training sample than "
              "the budget (`GEOSTUDIO_MEMORY_BUDGET_MB`, default 2048); refused before any pixel is read.",
              "Set `onboarding_options.chip_size` (e.g. 512), or raise `GEOSTUDIO_MEMORY_BUDGET_MB`."),
    ErrorCode("dataset_prepare", _I, "Preparing the imagery for the labels gave unexpected files.",
              "See the message; report it if it repeats.", "0012"),
    ErrorCode("unreadable_raster", _I, "An input raster is not a readable GeoTIFF.", "Replace the file."),
    # tuning
    ErrorCode("unknown_dataset", _S, "`dataset_id` is not in the workspace.", "Onboard it, or use a listed one."),
    ErrorCode("unknown_backbone", _S, "`base_model_id` is not a known backbone.", "Use one the message lists."),
    ErrorCode("unknown_template", _S, "`tune_template_id` is not a known template.", "Use one the message lists."),
    ErrorCode("incompatible_backbone", _S, "The backbone does not fit the template's model category; the message "
              "lists the backbones that fit.", "Pick a backbone of the template's category."),
    ErrorCode("purpose_mismatch", _S, "The template's purpose (Segmentation, Regression) differs from the dataset's; "
              "the message names the templates of the dataset's purpose.",
              "Pick a template of the dataset's purpose."),
    ErrorCode("multimodal_not_supported", _S, "The template takes one modality; the dataset has several (the "
              "message names the templates that take several).",
              "Pick a multi-modal template."),
    ErrorCode("modality_not_supported", _S, "The backbone does not take one of the dataset's modalities (TerraMind: "
              "RGB, S2L2A, S2L1C, S1GRD, S1RTC, DEM); the message names those it takes.",
              "Onboard the data source with one of the modality tags named, or pick a template that takes any bands."),
    ErrorCode("bands_not_supported", _S, "The backbone cannot take some of the dataset's bands (Clay: bands without a "
              "known wavelength; TerraMind: bands that are not the modality's); the message names them and the "
              "bands it takes.", "Name the bands as the message lists when onboarding, or pick another template."),
    ErrorCode("image_size_mismatch", _S, "The backbone takes images of one size only (Clay: its image size) and the "
              "dataset's chips, `data.crop_size` or `model.backbone_img_size` differ from it.",
              "Set the value the message names, or onboard with a `chip_size` that fits."),
    ErrorCode("unknown_parameter", _S, "`model_parameters` names a parameter the template does not have.",
              "Use the parameter names the message lists."),
    ErrorCode("invalid_parameter", _S, "A value in `model_parameters` has the wrong type or range.",
              "Fix the value named."),
    ErrorCode("template_error", _S, "The template could not be rendered with these parameters.",
              "Check the parameters named in the message."),
    ErrorCode("template_file_unreadable", _S, "`template-import`: the template file, its parameter schema file or "
              "the exported template cannot be read (missing, not UTF-8, not an export).",
              "Give an existing .yaml/.yaml.j2 file, a .json schema, or a template export (.json, .zip)."),
    ErrorCode("template_name_taken", _S, "`template-import`: a template (built-in or user-defined) has that name.",
              "Give another name, or delete that user template first."),
    ErrorCode("template_schema_invalid", _S, "`template-import`: the parameter schema is not a JSON Schema of "
              "parameter groups, or a default breaks its own rule; the message names the parameter.",
              "Fix the schema (the Studio's `model_params` shape)."),
    ErrorCode("template_syntax", _S, "`template-import`: the template is not valid Jinja; the message names the line.",
              "Fix the Jinja tags on that line, or give plain YAML."),
    ErrorCode("template_undefined", _S, "`template-import`: the template uses a variable (or a key of one) the "
              "render does not provide; the message names it and its line.",
              "Use the variables the built-in templates use (the hint lists them)."),
    ErrorCode("template_not_terratorch", _S, "`template-import`: the rendered template is not YAML (the line is "
              "named) or lacks TerraTorch's sections (trainer, data, model with class_path).",
              "Give a config `terratorch fit -c` reads."),
    ErrorCode("template_outputs", _S, "`template-import`: the config writes checkpoints or logs outside the tune's "
              "folder (the setting is named).",
              "Use {{ run_dir }} for default_root_dir and the logger, {{ checkpoint_dir }} for the checkpoints."),
    ErrorCode("template_build_failed", _S, "`template-import`: the rendered config does not build (trainer, "
              "datamodule or model); the message names the problem, such as an unknown backbone.",
              "Fix the part named; `terratorch fit -c` would stop there too."),
    ErrorCode("invalid_config", _I, "TerraTorch rejected the rendered training config.",
              "The reason is in the engine log; check the template and parameters."),
    ErrorCode("training_out_of_memory", _I, "Training ran out of memory.",
              "Lower `data.batch_size`, set `data.crop_size`, or pick a smaller backbone."),
    ErrorCode("training_data_error", _I, "The dataset's samples do not fit in one batch.",
              "Onboard with a `chip_size`, or set `batch_size` 1."),
    ErrorCode("no_checkpoint", _I, "Training ended without saving a checkpoint.",
              "Check that the validation split is not empty."),
    ErrorCode("distributed_invalid", _S, "`train_options.devices`, `num_nodes` or `strategy` cannot run: more "
              "devices than this machine has, several nodes outside a cluster export, several processes on MPS; the "
              "message names the field and what it takes.",
              "Set the field named to what the message allows, or export the tune for a cluster."),
    ErrorCode("training_worker_failed", _I, "A distributed (DDP) training process other than the engine's own "
              "failed; the others were stopped.", "The reason is in the engine log (stderr); check memory and cores."),
    ErrorCode("export_path_unusable", _I, "`train_options.export_cluster` names a folder that exists and is not "
              "empty, lies under a file or in the workspace, or cannot be written; checked before any work.",
              "Give a new folder outside the workspace, in a place you can write to."),
    ErrorCode("not_resumable", _I, "`train_options.resume_from` names a tune that cannot be resumed: it is not "
              "Cancelled or Failed, kept no last checkpoint, or is in use; or the spec names another dataset, "
              "backbone, template or parameters than the tune's.",
              "Resume a Cancelled or Failed tune that says it kept a checkpoint, with its own spec "
              "(contract.tune_resume_spec), or start a new tune."),
    ErrorCode("engine_died", _I, "The engine running a tune stopped without finishing (killed, crashed, the "
              "machine went down); found by the next engine command. Kept as a Failed tune when it had saved a "
              "checkpoint, else in `failed/tunes/`, with the tail of its log.",
              "Resume the tune if it kept a checkpoint, or run it again; check memory if it repeats."),
    # inference
    ErrorCode("unknown_model", _S, "The tuned model is not in the workspace.", "Use a listed tune id."),
    ErrorCode("weights_unknown", _S, "No published pre-trained weights are known for the backbone.",
              "Train from random initialisation or give a local checkpoint file."),
    ErrorCode("weights_missing", _I, "The backbone's pre-trained weights are not in the Hugging Face cache and "
              "downloads are off; the message names the repository, the file and the cache folder.",
              "Download them (Settings: allow downloads), copy the file there, give a local file, or train from "
              "random initialisation."),
    ErrorCode("weights_file_missing", _S, "The local weights file does not exist.", "Give an existing checkpoint."),
    ErrorCode("weights_file_unreadable", _S, "The local weights file is not a checkpoint torch can read.",
              "Give a torch.save state dict, a Lightning .ckpt or a .safetensors file."),
    ErrorCode("downloads_off", _I, "A download was asked for while downloads are off (HF_HUB_OFFLINE=1).",
              "Allow downloads in GeoStudio > Settings, or copy the file into the cache the message names."),
    ErrorCode("download_failed", _E, "The download failed (network, HTTP or hub error).",
              "Check the connection and run it again: it continues where it stopped."),
    ErrorCode("model_not_ready", _S, "The tune has no finished model: a dry run, or a tune cancelled or failed "
              "before it finished.", "Resume the tune, or use a finished one."),
    ErrorCode("remote_url", _S, "An input is a URL, not a local file.", "Download it first."),
    ErrorCode("missing_input", _I, "An input raster does not exist.", "Check the path."),
    ErrorCode("tune_tiling_invalid", _I, "The tune's tiling (crop, stride) in its `config_deploy.yaml` cannot be "
              "used: a stride of 0 or above the crop, a crop under 1.", "Put back the value named, or fine-tune again."),
    ErrorCode("output_path_unusable", _I, "`output_path` is an existing folder, lies under a file, or cannot be "
              "written; checked before any work.", "Give a file path in a folder you can write to."),
    ErrorCode("checkpoint_mismatch", _I, "The tune's checkpoint does not fit its config.", "Run the tune again."),
    # the model registry (export-model, import-model)
    ErrorCode("model_file_missing", _S, "A file `import-model` names (archive, tune_config_url, tune_checkpoint_url) "
              "does not exist.", "Check the path."),
    ErrorCode("model_archive_invalid", _I, "The model zip cannot be imported: not a zip, a member with an unsafe path "
              "(`..`, absolute, a link), or a `tune.json` that is missing, broken or lacks a field or a file it names; "
              "the message names the member or field. Nothing was imported.",
              "Export the model again with `export-model`, or import the Studio's form (config_deploy.yaml + checkpoint)."),
    ErrorCode("model_config_invalid", _I, "The deploy config to import is not YAML with TerraTorch's `model` and `data` "
              "sections (class_path, init_args, means, stds, classes); the message names the file and what it lacks.",
              "Give the tune's `config_deploy.yaml` as TerraTorch wrote it."),
    ErrorCode("model_checkpoint_invalid", _I, "The checkpoint to import is not a file torch can read, or holds no "
              "state dict of weights; the message names the file.",
              "Give the tune's state-dict checkpoint (`best-state_dict-*.ckpt`)."),
    # inference over an area and dates (inference/plan.py, availability.py, area_inputs.py)
    ErrorCode("area_too_large", _S, "The inference area (bbox or polygons) is larger than the limit (`max_area_sq_km`, "
              "default 800 km², the Studio's MAX_INFERENCE_AREA_SQ_KM); refused before anything downloads. The "
              "message gives the area and the limit.", "Draw a smaller area, or raise `max_area_sq_km`."),
    ErrorCode("dates_in_future", _S, "A `temporal_domain` date lies after today; the message names it and today.",
              "Give dates up to today (YYYY-MM-DD or YYYY-MM-DD_YYYY-MM-DD)."),
    ErrorCode("area_outside_coverage", _I, "The area lies outside the collection's spatial extent: no date can have "
              "data there; the message names the collection and its extent.",
              "Draw the area inside the collection's coverage, or pick a model trained on a collection that covers it."),
    ErrorCode("model_input_missing", _S, "Inference over an area needs the model's input data (connector, collection, "
              "bands): neither the spec's `model_input_data_spec`, the tune nor its dataset names them.",
              "Give `model_input_data_spec` (the Studio's list of connector, collection, modality_tag, bands)."),
    ErrorCode("area_multimodal_not_supported", _S, "Inference over an area runs models of one modality; the model "
              "takes several.", "Fetch each modality (Connectors), or use a single-modality model."),
    ErrorCode("no_crs", _I, "The input has no CRS, so the bbox cannot be placed on it.", "Assign the raster's CRS."),
    ErrorCode("bbox_outside", _I, "The bbox does not overlap the input.", "Draw the extent over the raster."),
    ErrorCode("band_count", _I, "The input has fewer bands than the model reads.",
              "Predict on imagery with the bands the model was trained on."),
    ErrorCode("modality_inputs", _I, "A multi-modal model takes one raster per modality, and the inputs do not "
              "give that: a modality without a raster (matched by the end of the file name, its `file_suffix`), two "
              "rasters for one modality, or rasters that match no suffix when their count is not the modalities'; the "
              "message names the modalities and their suffixes.",
              "Give one raster per modality, named <scene><suffix> (such as Spain_7370579_S2Hand.tif), or exactly "
              "one raster per modality in the model's order."),
    ErrorCode("modality_grid", _I, "The rasters of one scene for a multi-modal model are not on one grid (CRS, "
              "transform, size); the message names both files and their grids.",
              "Resample them onto one grid (QGIS: Raster > Projections > Warp, or Align rasters)."),
    ErrorCode("band_mismatch", _I, "The input names its bands and they are not the model's, or not in its order "
              "(both lists named, QGIS's 1-based numbers); checked from the header before the model is loaded.",
              "Predict on imagery with the model's bands in its order, or fine-tune a model on these bands."),
]

CODES: dict[str, ErrorCode] = {e.code: e for e in _TABLE}
BY_STUDIO_CODE: dict[str, ErrorCode] = {e.studio_code: e for e in _TABLE if e.studio_code}
assert len(CODES) == len(_TABLE), "duplicate error code"


def lookup(code: str) -> Optional[ErrorCode]:
    """The entry of a code name, or of a Studio number (``"0002"``); None for an unknown code."""
    return CODES.get(code) or BY_STUDIO_CODE.get(code)


def markdown_table() -> str:
    """The README's error table (between ``<!-- error-codes:start -->`` and ``<!-- error-codes:end -->``)."""
    rows = ["| code | exit | Studio | meaning | what to do |", "|---|---|---|---|---|"]
    for e in _TABLE:
        rows.append(f"| `{e.code}` | {e.exit} | {e.studio_code or ''} | {e.meaning} | {e.action} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
