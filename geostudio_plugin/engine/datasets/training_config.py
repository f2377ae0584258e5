"""A TerraTorch fit config built from a dataset's ``dataset.json`` alone.

It proves that an onboarded dataset is TerraTorch-ready for both generic datamodules: one modality ->
GenericNonGeoSegmentationDataModule with a ResNet-18 UNet; several -> GenericMultiModalDataModule with
TerraMind-tiny over the modalities (random init; no download). Tuning templates render richer configs;
this is the smallest honest one (`python -m geostudio_plugin.engine.datasets.training_config DIR OUT`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TERRAMIND_MODALITIES = {"S2L2A", "S2L1C", "S1GRD", "S1RTC", "DEM", "RGB"}


def fit_config(dataset_dir: Path, run_dir: Path, epochs: int = 1, batch_size: int = 2) -> dict[str, Any]:
    dataset_dir = Path(dataset_dir).resolve()
    record = json.loads((dataset_dir / "dataset.json").read_text())
    tp = record["training_params"]
    modalities = record["modalities"]
    num_classes = len(record["classes"])
    trainer = {"accelerator": "cpu", "devices": 1, "precision": 32, "max_epochs": epochs,
               "enable_checkpointing": False, "enable_progress_bar": False, "logger": False,
               "default_root_dir": str(run_dir), "log_every_n_steps": 1}
    splits = {f"{name}_split": str(dataset_dir / tp[f"{name}_split_path"]) for name in ("train", "val", "test")}
    labels = str(dataset_dir / tp[modalities[0]]["train_labels_dir"])
    to_tensor = [{"class_path": "albumentations.pytorch.transforms.ToTensorV2"}]
    if len(modalities) == 1:
        m = tp[modalities[0]]
        root = str(dataset_dir / m["train_data_dir"])
        data = {"class_path": "terratorch.datamodules.GenericNonGeoSegmentationDataModule", "init_args": {
            "batch_size": batch_size, "num_workers": 0, "num_classes": num_classes,
            "train_data_root": root, "val_data_root": root, "test_data_root": root,
            "train_label_data_root": labels, "val_label_data_root": labels, "test_label_data_root": labels,
            **splits, "ignore_split_file_extensions": False, "allow_substring_split_file": True,
            "img_grep": m["file_suffix"], "label_grep": tp["label_suffix"],
            "dataset_bands": list(range(m["band_count"])), "output_bands": m["bands"],
            "means": m["norm_means"], "stds": m["norm_stds"], "no_data_replace": 0, "no_label_replace": -1,
            "check_stackability": False, "train_transform": to_tensor}}
        model_args = {"backbone": "timm_resnet18", "backbone_pretrained": False, "backbone_in_chans": len(m["bands"]),
                      "necks": [{"name": "SelectIndices", "indices": [0, 1, 2, 3]}], "decoder": "UNetDecoder",
                      "decoder_channels": [64, 32, 16, 8], "num_classes": num_classes}
    else:
        unknown = set(modalities) - TERRAMIND_MODALITIES
        if unknown:
            raise ValueError(f"TerraMind knows no modality {sorted(unknown)}; use {sorted(TERRAMIND_MODALITIES)}")
        roots = {m: str(dataset_dir / tp[m]["train_data_dir"]) for m in modalities}
        data = {"class_path": "terratorch.datamodules.GenericMultiModalDataModule", "init_args": {
            "task": "segmentation", "batch_size": batch_size, "num_workers": 0, "num_classes": num_classes,
            "modalities": modalities, "rgb_modality": modalities[-1],
            "train_data_root": roots, "val_data_root": roots, "test_data_root": roots,
            "train_label_data_root": labels, "val_label_data_root": labels, "test_label_data_root": labels,
            **splits, "image_grep": {m: tp[m]["file_suffix"] for m in modalities}, "label_grep": tp["label_suffix"],
            "dataset_bands": {m: list(range(tp[m]["band_count"])) for m in modalities},
            "output_bands": {m: tp[m]["bands"] for m in modalities},
            "means": {m: tp[m]["norm_means"] for m in modalities}, "stds": {m: tp[m]["norm_stds"] for m in modalities},
            "no_data_replace": 0, "no_label_replace": -1, "check_stackability": False,
            "train_transform": to_tensor}}
        model_args = {"backbone": "terramind_v1_tiny", "backbone_pretrained": False,
                      "backbone_modalities": modalities, "backbone_merge_method": "mean",
                      "necks": [{"name": "SelectIndices", "indices": [2, 5, 8, 11]},
                                {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                                {"name": "LearnedInterpolateToPyramidal"}],
                      "decoder": "UNetDecoder", "decoder_channels": [64, 32, 16, 8], "num_classes": num_classes}
    return {
        "seed_everything": 0, "trainer": trainer, "data": data,
        "model": {"class_path": "terratorch.tasks.SemanticSegmentationTask", "init_args": {
            "model_factory": "EncoderDecoderFactory", "model_args": model_args, "loss": "ce", "ignore_index": -1,
            "freeze_backbone": False, "plot_on_val": False,
            "class_names": [c["name"] for c in record["classes"]]}},
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1.0e-3}},
    }


if __name__ == "__main__":
    import yaml

    dataset, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_text(yaml.safe_dump(fit_config(dataset, out.parent / "run")))
    print(out)
