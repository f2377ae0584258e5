"""The Datasets and Fine-tuning docks driven like a user would, against the real engine."""

from __future__ import annotations

import pytest
from conftest import SAMPLES, wait_for


def test_connectors_pick_fills_onboarding_and_onboard_from_the_dock(plugin):
    plugin.toggle_dock("connectors")
    connectors = plugin.docks["connectors"]
    wait_for(lambda: connectors.ui.tree.topLevelItemCount() > 0, timeout=60)
    connectors.ui.searchEdit.setText("s1_grd")
    visible = [connectors.ui.tree.topLevelItem(i) for i in range(connectors.ui.tree.topLevelItemCount())
               if not connectors.ui.tree.topLevelItem(i).isHidden()]
    assert [item.text(0) for item in visible] == ["Sentinel Hub"]
    s1 = next(visible[0].child(i) for i in range(visible[0].childCount()) if visible[0].child(i).text(0) == "s1_grd")
    plugin.toggle_dock("onboarding")
    onboarding = plugin.docks["onboarding"]
    onboarding.ui.nameEdit.setText("dock water")
    onboarding.ui.folderWidget.setFilePath(str(SAMPLES / "train"))
    onboarding.ui.labelSuffixEdit.setText("_LabelHand.tif")
    onboarding.ui.dataSuffixesEdit.setText("_S1Hand.tif")
    onboarding.start_prescan()
    wait_for(lambda: onboarding.task is None, timeout=60)
    assert onboarding.ui.prescanLabel.text() == "6 pair(s); no problem found."
    table = onboarding.ui.sourcesTable
    assert [table.item(0, c).text() for c in (0, 3)] == ["_S1Hand.tif", "VV, VH"]  # from the files' band names
    categories = onboarding.ui.categoriesTable
    assert [categories.item(r, 0).text() for r in range(categories.rowCount())] == ["0", "1"]  # -1 is ignore
    table.setCurrentCell(0, 2)
    connectors.ui.tree.setCurrentItem(s1)  # pre-fills the selected data-source row
    assert table.item(0, 2).text() == "sentinelhub / s1_grd" and table.item(0, 1).text() == "S1GRD"
    assert table.item(0, 3).text() == "VV, VH"  # band names from the pre-scan are kept
    categories.item(1, 1).setText("Water")
    onboarding.ui.chipSpin.setValue(256)
    statuses = []
    onboarding.ui.onboardButton.click()
    assert not onboarding.ui.onboardButton.isEnabled() and onboarding.ui.cancelButton.isEnabled()
    assert onboarding.ui.datasetList.item(0).text() == "dock water — pending"
    onboarding.task.eventReceived.connect(lambda e: statuses.append(onboarding.ui.datasetList.item(0).text()))
    wait_for(lambda: onboarding.task is None, timeout=120)
    assert onboarding.ui.progressBar.value() == 100
    assert any(t.startswith("dock water — onboarding: write") for t in statuses), statuses
    names = [onboarding.ui.datasetList.item(i).text() for i in range(onboarding.ui.datasetList.count())]
    assert any(n.startswith("dock water — Segmentation, S1GRD, 24 samples") for n in names), names

    # preview: image in grey (S1 has no R/G/B), label paletted with the categories
    onboarding.ui.datasetList.setCurrentRow(next(i for i, n in enumerate(names) if n.startswith("dock water")))
    image, label = onboarding.preview_selected(count=1)
    assert image.isValid() and label.isValid() and image.extent() == label.extent()
    classes = [(c.value, c.label) for c in label.renderer().classes()]
    assert classes == [(0, "Background"), (1, "Water")]


@pytest.mark.training
def test_fine_tune_from_the_dock_shows_live_metrics(plugin, trained_tune):
    plugin.toggle_dock("tuning")
    tuning = plugin.docks["tuning"]
    wait_for(lambda: tuning.ui.templateCombo.count() > 0, timeout=60)
    tuning.ui.datasetCombo.setCurrentIndex(tuning.ui.datasetCombo.findData(trained_tune["dataset_id"]))
    template = tuning.ui.templateCombo.findText("timm_resnet : Segmentation")
    assert template >= 0
    tuning.ui.templateCombo.setCurrentIndex(template)
    backbones = [tuning.ui.backboneCombo.itemData(i) for i in range(tuning.ui.backboneCombo.count())]
    assert backbones[0] == "timm_resnet18" and all(b.startswith("timm_resnet") for b in backbones)
    tuning.ui.nameEdit.setText("dock tune")
    tuning.form.field("runner.max_epochs").setValue(1)
    tuning.form.field("data.crop_size").setValue(64)
    tuning.ui.deviceCombo.setCurrentText("cpu")
    tuning.ui.startButton.click()
    wait_for(lambda: tuning.task is None, timeout=240)
    shown = {tuning.ui.metricsTable.item(r, 0).text() for r in range(tuning.ui.metricsTable.rowCount())}
    assert {"train/loss", "val/loss", "val/mIoU"} <= shown
    tunes = [tuning.ui.tuneList.item(i).text() for i in range(tuning.ui.tuneList.count())]
    assert any(t.startswith("dock-tune — timm_resnet18") for t in tunes), tunes


def test_studio_payload_shapes_onboard_from_the_dock(plugin, tmp_path):
    """The burn-scars shape (MARIDA) and the multi-modal flood shape (Sen1Floods11 S1 + S2), loaded and onboarded."""
    import json
    import shutil
    import sys

    from conftest import REPO

    from geostudio_plugin import workspace_index

    sys.path.insert(0, str(REPO / "tests" / "support"))
    from payloads import FLOOD_FILES, MARIDA, flood_payload, marida_payload

    flood = tmp_path / "flood"
    flood.mkdir()
    for path in FLOOD_FILES:
        shutil.copy(path, flood / path.name)
    plugin.toggle_dock("onboarding")
    dock = plugin.docks["onboarding"]
    for payload, modalities, samples in ((marida_payload(MARIDA), ["S2L2A"], 5),
                                         (flood_payload(flood), ["S2L1C", "S1GRD"], 4)):
        dock.load_payload(payload)
        rebuilt = dock.build_payload()
        assert [s["modality_tag"] for s in rebuilt["data_sources"]] == modalities
        assert rebuilt["data_sources"][0]["bands"] == payload["data_sources"][0]["bands"]
        assert rebuilt["onboarding_options"]["ignore_id"] == payload["onboarding_options"].get("ignore_id", -1)
        dock.start_onboarding()
        wait_for(lambda: dock.task is None, timeout=180)
        record = next(r for r in workspace_index.datasets() if r["dataset_name"] == payload["dataset_name"])
        assert record["modalities"] == modalities and record["n_samples"] == samples
        if len(modalities) == 2:
            assert record["training_params"]["S1GRD"]["align_dates"] is True
        else:
            assert json.dumps(record["training_params"]["S2L2A"]["rgb_indices"]) == "[2, 1, 0]"
