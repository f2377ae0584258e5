"""Does a template take this backbone and this dataset? One check before any work, and what fits instead.

``check`` refuses, naming what would fit: a backbone of another model category (the Studio's rule; the
message lists the template's backbones), a dataset of another purpose (the templates of the dataset's
purpose), several modalities for a one-modality template (the multi-modal templates), a modality TerraMind
does not know, bands a backbone cannot take (Clay: no known wavelength; TerraMind: not a band of the
modality), and a Clay image size that is not the chip size.

``backbone_inputs`` turns the same facts into what the template renders: the bands under the names the
backbone knows (Prithvi's HLS names, Clay's, TerraMind's per modality), the neck indices, Clay's image size.
The facts themselves are data: ``backbones.json`` (per backbone, plus ``band_aliases``).
"""

from __future__ import annotations

from typing import Any, Optional

from ..catalog import band_aliases, compatible, compatible_backbones, templates, templates_for
from ..protocol import SpecError


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def canonical_band(name: str) -> Optional[str]:
    """A dataset's band name as TerraTorch names it (BLUE, NIR_NARROW, VV, DEM, ...), or None when unknown."""
    key = _key(name)
    for canonical, aliases in band_aliases().items():
        if key == _key(canonical) or key in {_key(a) for a in aliases}:
            return canonical
    return None


def _band_names(dataset: dict[str, Any], tag: str) -> list[str]:
    tp = dataset["training_params"][tag]
    names = tp.get("band_names") or []
    return [str(n) for n in names] if len(names) == len(tp["bands"]) else [str(b) for b in tp["bands"]]


def _template_list(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['id']} ({t['name']})" for t in items) or "(none)"


def _family(backbone: dict[str, Any]) -> str:
    return backbone["model_params"]["model_category"]


def _chip_size(dataset: dict[str, Any]) -> Optional[int]:
    return (dataset.get("onboarding_options") or {}).get("chip_size")


def clay_img_size(params: dict[str, Any], dataset: dict[str, Any]) -> Optional[int]:
    """Clay's image size: ``model.backbone_img_size``, or the dataset's chip size when that is 0."""
    chosen = params.get("model", {}).get("backbone_img_size") or 0
    return chosen or _chip_size(dataset)


def check(template: dict[str, Any], backbone: dict[str, Any], dataset: dict[str, Any],
          params: dict[str, Any]) -> None:
    """Refuse a template/backbone/dataset combination that cannot train, naming what would fit."""
    if not compatible(template, backbone):
        fits = [b["name"] for b in compatible_backbones(template)]
        raise SpecError("incompatible_backbone",
                        f"Backbone {backbone['name']} ({_family(backbone)}) does not fit template '{template['name']}' "
                        f"({template['extra_info']['model_category']}); backbones that fit it: {', '.join(fits)}.",
                        f"Pick one of: {', '.join(fits)}.")
    purpose = dataset["purpose"]
    if template["purpose"] != purpose:
        raise SpecError("purpose_mismatch",
                        f"Template '{template['name']}' is for {template['purpose']} but dataset "
                        f"{dataset['dataset_id']} is for {purpose}; templates for {purpose}: "
                        f"{_template_list(templates_for(purpose))}.",
                        f"Pick a template for {purpose}, or onboard the data as a {template['purpose']} dataset.")
    modalities = list(dataset["modalities"])
    multimodal = bool(template["extra_info"].get("multimodal"))
    if len(modalities) != 1 and not multimodal:
        several = [t for t in templates_for(purpose) if t["extra_info"].get("multimodal")]
        raise SpecError("multimodal_not_supported",
                        f"Template '{template['name']}' takes one modality; dataset {dataset['dataset_id']} has "
                        f"{', '.join(modalities)}. Templates that take several: {_template_list(several)}.",
                        "Pick a multi-modal template, or onboard one data source only.")
    family = _family(backbone)
    if family == "terramind":
        known = backbone["model_params"]["modalities"]
        unknown = [m for m in modalities if m not in known]
        if unknown:
            others = [t for t in templates_for(purpose)
                      if t["extra_info"]["model_category"] not in ("clay", "terramind")]
            raise SpecError("modality_not_supported",
                            f"{backbone['name']} takes the modalities {', '.join(known)}; dataset "
                            f"{dataset['dataset_id']} has {', '.join(unknown)}.",
                            f"Onboard the data source with one of the modality tags {', '.join(known)}"
                            + (f", or pick a template that takes any bands: {_template_list(others)}." if
                               len(modalities) == 1 else "."))
        for tag in modalities:
            _terramind_bands(backbone, dataset, tag)
    elif family == "clay":
        tag = modalities[0]
        names = _band_names(dataset, tag)
        allowed = backbone["model_params"]["band_names"]
        bad = [n for n in names if canonical_band(n) not in allowed]
        if bad:
            raise SpecError("bands_not_supported",
                            f"{backbone['name']} needs bands with a known wavelength; dataset "
                            f"{dataset['dataset_id']}'s {tag} bands {', '.join(bad)} have none "
                            f"(it knows {', '.join(allowed)}).",
                            "Name the bands as one of those (band_name when onboarding), or pick a template that takes "
                            "any bands: " + _template_list([t for t in templates_for(purpose) if t["extra_info"]
                                                            ["model_category"] not in ("clay", "terramind")]))
        _clay_size(backbone, dataset, params)


def _terramind_bands(backbone: dict[str, Any], dataset: dict[str, Any], tag: str) -> Optional[list[str]]:
    """None when the dataset has the modality's full band set, else its bands as TerraMind names them."""
    full = backbone["model_params"]["modalities"][tag]
    names = _band_names(dataset, tag)
    mapped = [canonical_band(n) for n in names]
    if len(names) == len(full) and (all(m is None for m in mapped) or mapped == full):
        return None  # the whole modality, in its order (unnamed bands are taken as that order)
    bad = [n for n, m in zip(names, mapped) if m not in full]
    if bad:
        raise SpecError("bands_not_supported",
                        f"{backbone['name']}'s {tag} modality has the bands {', '.join(full)}; dataset "
                        f"{dataset['dataset_id']}'s {tag} bands {', '.join(bad)} are not among them.",
                        f"Name the bands as {tag}'s (band_name when onboarding), or give all {len(full)} in order.")
    return [m for m in mapped if m is not None]


def _clay_size(backbone: dict[str, Any], dataset: dict[str, Any], params: dict[str, Any]) -> int:
    chip = _chip_size(dataset)
    chosen = params.get("model", {}).get("backbone_img_size") or 0
    patch = backbone["model_params"]["patch_size"]
    if not chip:
        raise SpecError("image_size_mismatch",
                        f"{backbone['name']} takes images of one size only, and dataset {dataset['dataset_id']} keeps "
                        "whole scenes (no chip_size).",
                        "Onboard the data again with onboarding_options.chip_size (e.g. 256), then tune.")
    if chosen and chosen != chip:
        raise SpecError("image_size_mismatch",
                        f"model.backbone_img_size = {chosen} but dataset {dataset['dataset_id']}'s chips are "
                        f"{chip} px; {backbone['name']} takes only images of its image size.",
                        f"Set model.backbone_img_size to {chip}, or 0 (the chip size).")
    if chip % (2 * patch):
        raise SpecError("image_size_mismatch",
                        f"Dataset {dataset['dataset_id']}'s chips are {chip} px; {backbone['name']} (patch {patch}) "
                        f"needs a multiple of {2 * patch}.",
                        f"Onboard with a chip_size that is a multiple of {2 * patch} "
                        f"(e.g. {chip - chip % (2 * patch)}).")
    crop = params.get("data", {}).get("crop_size") or 0
    if crop and crop != chip:
        raise SpecError("image_size_mismatch",
                        f"data.crop_size = {crop} but {backbone['name']} takes only {chip} px images (the chip size).",
                        f"Set data.crop_size to 0 (off) or {chip}.")
    return chip


def backbone_inputs(backbone: dict[str, Any], dataset: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """What the template renders for the backbone: bands under its names, modalities, neck indices, img size."""
    mp = backbone["model_params"]
    family = _family(backbone)
    tags = list(dataset["modalities"])
    out: dict[str, Any] = {"neck_indices": mp.get("neck_indices", [0, 1, 2, 3]), "patch_size": mp.get("patch_size"),
                           "kwargs": mp.get("backbone_kwargs", {}), "modalities": tags, "modality_bands": None,
                           "bands": None, "img_size": None}
    if family == "prithvi":  # HLS names where known (pretrained patch-embed rows are matched by name)
        out["bands"] = [canonical_band(n) or n for n in _band_names(dataset, tags[0])]
    elif family == "clay":
        out["bands"] = [canonical_band(n) for n in _band_names(dataset, tags[0])]
        out["img_size"] = clay_img_size(params, dataset)
    elif family == "terramind" and all(t in mp.get("modalities", {}) for t in tags):
        subsets = {t: _terramind_bands(backbone, dataset, t) for t in tags}
        out["modality_bands"] = {t: b for t, b in subsets.items() if b is not None} or None
    return out


def fitting_templates(dataset: dict[str, Any]) -> list[dict[str, Any]]:
    """Templates of the dataset's purpose that take its number of modalities (for messages and listings)."""
    several = len(dataset["modalities"]) > 1
    return [t for t in templates() if t["purpose"] == dataset["purpose"]
            and (not several or t["extra_info"].get("multimodal"))]
