"""What a model reads, per modality: the Studio's ``model_input_data_spec``, built in one place.

One entry per modality, in the model's input order, each the Studio's data-source shape
(``connector, collection, file_suffix, modality_tag, bands[index, band_name, RGB_band, scaling_factor],
align_dates, transform``) restricted to the bands the model reads, plus the preprocessing TerraTorch's
datamodule applied in training (``norm_means``, ``norm_stds``, ``constant_scale``, ``no_data_replace``,
``band_count`` of the file, the file's ``nodata``).

The preprocessing comes from the config's ``data.init_args`` (the training config a tune renders, or a
``config_deploy.yaml``), the names and roles of the bands from the dataset (``data_sources``,
``training_params``) where there is one. TerraTorch's generic datamodule keeps those values as lists and
numbers (``img_grep``); its multi-modal datamodule as mappings keyed by modality (``image_grep``), with the
order of the modalities in ``modalities``. ``data_spec`` (the single-modality record older readers use) is
the first entry's view (``data_spec_view``). Standard library only.
"""

from __future__ import annotations

from typing import Any, Optional

STUDIO_KEYS = ("connector", "collection", "modality_tag", "file_suffix", "bands", "align_dates", "transform")


def is_multimodal(data_args: dict[str, Any]) -> bool:
    """A multi-modal datamodule's config: its means are a mapping keyed by modality."""
    return isinstance(data_args.get("means"), dict)


def modality_tags(data_args: dict[str, Any], dataset: Optional[dict[str, Any]] = None) -> list[Optional[str]]:
    """The modalities in the model's input order (the datamodule's ``modalities``; one untagged otherwise)."""
    if is_multimodal(data_args):
        listed = data_args.get("modalities")
        return [str(t) for t in (listed if isinstance(listed, list) and listed else data_args["means"])]
    tags = (dataset or {}).get("modalities") or []
    return [str(tags[0])] if tags else [None]


def _per_modality(data_args: dict[str, Any], key: str, tag: Optional[str], multimodal: bool) -> Any:
    value = data_args.get(key)
    if multimodal:
        return value.get(tag) if isinstance(value, dict) else value  # a number for all (no_data_replace)
    return value


def file_positions(dataset_bands: Any, output_bands: Any, count: int) -> list[int]:
    """0-based bands of the file the model reads: ``output_bands``' places in ``dataset_bands`` (as the generic
    datamodules select them), else the first ``count`` bands."""
    if isinstance(dataset_bands, list) and isinstance(output_bands, list) and dataset_bands and output_bands:
        try:
            return [dataset_bands.index(b) for b in output_bands]
        except ValueError:
            pass
    return list(range(count))


def _suffix(grep: Any) -> Optional[str]:
    """``*_S2Hand.tif`` -> ``_S2Hand.tif`` (the Studio's data-source suffix, no glob)."""
    return (grep.lstrip("*") or None) if isinstance(grep, str) else None


def _number(value: Any) -> Optional[float]:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def modality_entry(data_args: dict[str, Any], tag: Optional[str], dataset: Optional[dict[str, Any]] = None
                   ) -> dict[str, Any]:
    """The ``model_input_data_spec`` entry of one modality (see the module's docstring)."""
    multimodal = is_multimodal(data_args)
    params = ((dataset or {}).get("training_params") or {}).get(tag) or {}
    source = next((s for s in (dataset or {}).get("data_sources") or [] if s.get("modality_tag") == tag), {})
    means = _per_modality(data_args, "means", tag, multimodal)
    stds = _per_modality(data_args, "stds", tag, multimodal)
    if not isinstance(means, list) or not isinstance(stds, list):  # a template whose datamodule keeps no stats
        means, stds = params.get("norm_means") or [], params.get("norm_stds") or []
    dataset_bands = _per_modality(data_args, "dataset_bands", tag, multimodal)
    output_bands = _per_modality(data_args, "output_bands", tag, multimodal)
    if isinstance(means, list) and means:
        positions = file_positions(dataset_bands, output_bands, len(means))
    else:
        positions = list(params.get("bands") or [])
    by_index = {int(b["index"]): b for b in source.get("bands") or [] if isinstance(b, dict)
                and str(b.get("index", "")).lstrip("-").isdigit()}
    onboarded = dict(zip(params.get("bands") or [], params.get("band_names") or []))
    named_in_config = [b for b in output_bands or [] if isinstance(b, str)] if isinstance(output_bands, list) else []
    bands = []
    for k, position in enumerate(positions):
        own = by_index.get(position, {})
        name = own.get("band_name") or onboarded.get(position) or (
            named_in_config[k] if len(named_in_config) == len(positions) else None)
        bands.append({"index": position, "band_name": name, "RGB_band": own.get("RGB_band"),
                      "scaling_factor": _number(own.get("scaling_factor", 1.0 if source else None))})
    grep = _per_modality(data_args, "image_grep" if multimodal else "img_grep", tag, multimodal)
    scale = _number(_per_modality(data_args, "constant_scale", tag, multimodal))
    count = params.get("band_count") or (len(dataset_bands) if isinstance(dataset_bands, list) else None)
    return {
        "connector": source.get("connector"), "collection": source.get("collection"), "modality_tag": tag,
        "file_suffix": source.get("file_suffix") or _suffix(grep) or _suffix(params.get("file_suffix")),
        "bands": bands, "align_dates": source.get("align_dates"), "transform": source.get("transform"),
        "band_count": count,
        "norm_means": [float(v) for v in means], "norm_stds": [float(v) for v in stds],
        "constant_scale": 1.0 if scale is None else scale,
        "no_data_replace": _number(_per_modality(data_args, "no_data_replace", tag, multimodal)),
        "nodata": params.get("nodata"),
    }


def model_input_data_spec(data_args: dict[str, Any], dataset: Optional[dict[str, Any]] = None
                          ) -> list[dict[str, Any]]:
    """Every modality the model reads, in its input order (``data_args``: the config's ``data.init_args``)."""
    return [modality_entry(data_args, tag, dataset) for tag in modality_tags(data_args, dataset)]


def data_spec_view(entry: dict[str, Any]) -> dict[str, Any]:
    """The single-modality ``data_spec`` of older records (the Inference dock, the band check) from one entry."""
    suffix = entry.get("file_suffix")
    return {
        "modality_tag": entry.get("modality_tag"),
        "data_source": {k: entry.get(k) for k in STUDIO_KEYS} if entry.get("connector") else None,
        "bands": [b["index"] for b in entry["bands"]],
        "band_names": [b["band_name"] for b in entry["bands"]] if all(b["band_name"] for b in entry["bands"]) else [],
        "band_count": entry.get("band_count") or len(entry["bands"]),
        "norm_means": entry["norm_means"], "norm_stds": entry["norm_stds"],
        "constant_scale": entry["constant_scale"], "nodata": entry.get("nodata"),
        "file_suffix": f"*{suffix}" if suffix else None,
    }


def input_specs(data_args: dict[str, Any], dataset: Optional[dict[str, Any]] = None
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(``model_input_data_spec``, ``data_spec``): both record fields, from one builder."""
    spec = model_input_data_spec(data_args, dataset)
    return spec, data_spec_view(spec[0])


def spec_text(spec: list[dict[str, Any]]) -> str:
    """"S2L1C (files ending _S2Hand.tif), S1GRD (files ending _S1Hand.tif)": the modalities for messages."""
    return ", ".join(f"{e.get('modality_tag') or 'image'} (files ending {e.get('file_suffix') or '?'})" for e in spec)
