"""The Fine-tuning dock's parameter form, dry run, history, Duplicate and Resume, used as a person does: combos
picked, values typed, buttons clicked, and what the dock then shows read back. The tunes are real (the bundled
Sen1Floods11 chips, timm_resnet18, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from conftest import REPO, wait_for


def _open(plugin):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    wait_for(lambda: dock.ui.templateCombo.count() > 0, timeout=60)
    return dock


def _type(widget, text: str) -> None:
    """Select all and type, as a person replaces a field's value; then leave the field."""
    from qgis.PyQt.QtTest import QTest

    widget.selectAll()
    QTest.keyClicks(widget, text)
    if hasattr(widget, "editingFinished"):
        widget.editingFinished.emit()


def _pick(combo, text: str) -> None:
    index = combo.findText(text)
    assert index >= 0, (text, [combo.itemText(i) for i in range(combo.count())])
    combo.setCurrentIndex(index)


def _choose(combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)


def _fill_tiny(dock, dataset_id: str, name: str, epochs: int) -> None:
    """A tune small enough for a test on two cores: 64 px crops, a 32-channel decoder, the CPU."""
    _choose(dock.ui.datasetCombo, dataset_id)
    _pick(dock.ui.templateCombo, "timm_resnet : Segmentation")
    _choose(dock.ui.backboneCombo, "timm_resnet18")
    _type(dock.ui.nameEdit, name)
    _type(dock.form.field("runner.max_epochs").lineEdit(), str(epochs))
    _type(dock.form.field("data.crop_size").lineEdit(), "64")
    _type(dock.form.field("model.decode_head.channels").lineEdit(), "32")
    _type(dock.form.field("optimizer.lr"), "1e-3")
    dock.ui.deviceCombo.setCurrentText("cpu")


def _row(dock, start: str) -> int:
    rows = [i for i in range(dock.ui.tuneList.count()) if dock.ui.tuneList.item(i).text().startswith(start)]
    assert rows, [dock.ui.tuneList.item(i).text() for i in range(dock.ui.tuneList.count())]
    return rows[0]


# ------------------------------------------------------------------ the form
def test_the_form_follows_the_template_and_flags_bad_values_before_start(plugin, trained_tune):
    dock = _open(plugin)
    _choose(dock.ui.datasetCombo, trained_tune["dataset_id"])
    _pick(dock.ui.templateCombo, "timm_resnet : Segmentation")
    tabs = dock.form.tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Data", "Model", "Runner", "LR config", "Optimizer",
                                                            "Evaluation"]  # the schema's groups, in its order
    lr = dock.form.field("optimizer.lr")
    assert lr.text() == "6e-05" and dock.form.field("data.batch_size").value() == 4  # the template's defaults
    assert dock.form.field("data.crop_size").text() == "0 (off)"
    assert "more than 0 and at most 10" in lr.toolTip() and "Default: 6e-05" in lr.toolTip()
    assert dock.form.field("optimizer.type").currentText() == "Adam"
    assert dock.ui.startButton.isEnabled() and dock.form.values() == {}

    _type(lr, "0")
    problem = dock.form.problemLabel
    assert problem.isVisibleTo(dock) and problem.text() == ("Learning rate (optimizer.lr): 0 is out of range; "
                                                            "allowed: more than 0 and at most 10.")
    assert "border" in lr.styleSheet() and not dock.ui.startButton.isEnabled() and not dock.ui.dryRunButton.isEnabled()
    assert tabs.tabBar().tabTextColor(tabs.indexOf(lr.parentWidget())).name() == "#b2182b"  # the tab says so too
    dock.ui.startButton.click()
    assert dock.task is None
    _type(lr, "abc")
    assert "optimizer.lr" in problem.text() and "not a finite number" in problem.text()
    _type(lr, "1e-4")
    assert not problem.isVisibleTo(dock) and lr.styleSheet() == "" and dock.ui.startButton.isEnabled()

    crop = dock.form.field("data.crop_size")
    _type(crop.lineEdit(), "10")  # between off (0) and the smallest crop (32)
    assert problem.text() == "Random crop size (data.crop_size): 10 is out of range; allowed: 0 (off), or 32 to 8192."
    _type(crop.lineEdit(), "64")
    stride = dock.form.field("model.tiled_inference_parameters.h_stride")
    _type(stride.lineEdit(), "300")  # a stride wider than the tile would leave gaps
    assert problem.text() == ("Tile vertical stride (model.tiled_inference_parameters.h_stride): 300 is larger than "
                              "Tile height (224); give at most 224.")
    assert not dock.ui.startButton.isEnabled()
    _type(stride.lineEdit(), "200")
    assert dock.ui.startButton.isEnabled()
    dock.form.field("optimizer.type").setCurrentText("AdamW")
    dock.form.field("model.frozen_backbone").click()
    assert dock.form.values() == {"data": {"crop_size": 64}, "optimizer": {"lr": 0.0001, "type": "AdamW"},
                                  "model": {"frozen_backbone": True, "tiled_inference_parameters": {"h_stride": 200}}}
    assert dock.build_payload()["model_parameters"] == dock.form.values()  # only the changed values are sent
    assert dock.form.fields["optimizer.lr"].label.font().bold()  # a changed value stands out
    assert not dock.form.fields["optimizer.weight_decay"].label.font().bold()

    # another template: its own parameters and backbones; what was changed is kept where it has the same path
    _pick(dock.ui.templateCombo, "Regression")
    assert all(dock.ui.backboneCombo.itemText(i).startswith("Prithvi") for i in range(dock.ui.backboneCombo.count()))
    assert "data.check_stackability" not in dock.form.fields  # the Regression template has no such parameter
    assert dock.form.field("optimizer.lr").text() == "0.0001" and dock.form.field("data.crop_size").value() == 64
    _pick(dock.ui.templateCombo, "timm_resnet : Segmentation")
    assert dock.form.values()["optimizer"] == {"lr": 0.0001, "type": "AdamW"}
    dock.form.reset()
    assert dock.form.values() == {} and dock.form.field("optimizer.lr").text() == "6e-05"


def test_the_form_reads_and_writes_a_tunes_parameters():
    from qgis.PyQt.QtWidgets import QSpinBox

    from geostudio_plugin.gui.parameter_form import ParameterForm

    schema = json.loads((REPO / "geostudio_plugin/engine/data/templates/prithvi_seg.json").read_text())["model_params"]
    form = ParameterForm()
    form.set_schema(schema)
    unused = form.set_values({"runner": {"max_epochs": "5"}, "data": {"check_stackability": "true"},
                              "optimizer": {"lr": 0.0003}, "old_group": {"gone": 1}})
    assert unused == ["old_group.gone"]
    assert form.values() == {"runner": {"max_epochs": 5}, "data": {"check_stackability": True},
                             "optimizer": {"lr": 0.0003}}
    assert isinstance(form.field("runner.max_epochs"), QSpinBox) and form.field("optimizer.lr").text() == "0.0003"
    assert not form.problems()


def test_the_rules_match_the_engines_for_every_parameter_of_every_template(engine_python):
    """parameter_rules (QGIS side, standard library) and the engine's merge_parameters accept and refuse the same
    values, over every parameter of the six templates, and say the same range."""
    script = textwrap.dedent("""
        import json, sys
        from geostudio_plugin import parameter_rules as rules
        from geostudio_plugin.engine.catalog import templates
        from geostudio_plugin.engine.protocol import SpecError
        from geostudio_plugin.engine.tuning import render
        out = []
        for template in templates():
            schema = template["model_params"]
            for path, prop in rules.leaves(schema):
                tries = [prop.get("default"), "abc", "", -1, 0, 1, 2.5, "5", "6e-05", True, "true", 1e12, -1e12,
                         *prop.get("enum", []), *(prop.get(k) for k in ("minimum", "maximum", "offValue",
                                                                           "exclusiveMinimum") if k in prop)]
                for extra in ("minimum", "maximum"):
                    if extra in prop:
                        tries += [prop[extra] - 1, prop[extra] + 1]
                for value in tries:
                    try:
                        render.merge_parameters(schema, rules.nest({path: value}))
                        engine = True
                    except SpecError:
                        engine = False
                    ours = rules.problem(path, prop, value) == ""
                    if ours:  # and with the other parameters at their defaults, no sibling is exceeded
                        flat = {**rules.flatten(rules.defaults(schema)), path: rules.coerce(value, prop)}
                        ours = not rules.sibling_problems(schema, flat)
                    if engine != ours:
                        out.append(f"{template['id']} {path} {value!r}: engine {engine}, ours {ours}")
                if prop.get("type") in ("integer", "number") and render.allowed_text(prop) != rules.allowed_text(prop):
                    out.append(f"{template['id']} {path}: {render.allowed_text(prop)} != {rules.allowed_text(prop)}")
        print(json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    run = subprocess.run([str(engine_python), "-c", script], capture_output=True, text=True, cwd=REPO,
                         env={**env, "PYTHONPATH": str(REPO)}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------ dry run
def test_dry_run_shows_the_rendered_config_read_only(plugin, trained_tune):
    dock = _open(plugin)
    _fill_tiny(dock, trained_tune["dataset_id"], "dry form", epochs=7)
    dock.ui.dryRunButton.click()
    assert dock.task is not None and not dock.ui.startButton.isEnabled()
    wait_for(lambda: dock.task is None, timeout=120)
    dialog = dock.text_dialog
    assert dialog is not None and dialog.isVisible(), dock.ui.stageLabel.text()
    text = dialog.text()
    assert "max_epochs: 7" in text and "lr: 0.001" in text, text[:2000]
    assert dialog.editor.isReadOnly()
    assert dock.ui.stageLabel.text().startswith("Dry run dry-form")
    row = dock.ui.tuneList.currentRow()
    assert dock.ui.tuneList.item(row).text().startswith("dry-form — timm_resnet18 — Dry run")
    assert dock.ui.logButton.text() == "Config" and not dock.ui.resumeButton.isEnabled()
    dialog.close()
    dock.ui.logButton.click()  # the kept config.yaml, read back from the tune's folder
    assert dock.text_dialog.isVisible() and "max_epochs: 7" in dock.text_dialog.text()
    dock.text_dialog.close()


# ------------------------------------------------------------------ a real tune, its history, Duplicate
@pytest.mark.training
def test_a_tune_started_from_the_form_trains_is_listed_and_duplicates(plugin, trained_tune):
    from geostudio_plugin import workspace_index

    dock = _open(plugin)
    _fill_tiny(dock, trained_tune["dataset_id"], "form tune", epochs=1)
    dock.ui.startButton.click()
    assert dock.task is not None
    assert dock.ui.tuneList.item(0).text().startswith("form-tune — timm_resnet18 — Running")
    assert not dock.form.isEnabled() and not dock.ui.duplicateButton.isEnabled()
    live = []
    dock.task.eventReceived.connect(lambda _e: live.append(len(dock.curve.points("train/loss"))))
    wait_for(lambda: dock.task is None, timeout=300)
    assert max(live) == 1  # the curve got its point while the tune ran
    assert dock.ui.stageLabel.text().startswith("Done: "), dock.ui.stageLabel.text()
    row = _row(dock, "form-tune — timm_resnet18 — Finished")
    assert dock.ui.tuneList.currentRow() == row
    first, second = dock.ui.tuneList.item(row).text().split("\n")
    assert second.strip().startswith("test/mIoU ") and " · 1 epoch · " in second and second.endswith(" s"), second
    record = next(r for r in workspace_index.tunes() if r["tune_id"] == dock.ui.tuneList.item(row).toolTip())
    params = record["model_parameters"]
    assert (params["runner"]["max_epochs"], params["data"]["crop_size"], params["optimizer"]["lr"],
            params["model"]["decode_head"]["channels"]) == (1, 64, 0.001, 32)  # what was typed is what trained
    assert dock.curve.points("train/loss") and dock.curve.points("val/loss")

    dock.ui.logButton.click()
    assert dock.ui.logButton.text() == "Log" and "epoch 1/1 done" in dock.text_dialog.text()
    dock.text_dialog.close()

    # Duplicate: from another template and a cleared form back to this tune's choices
    _pick(dock.ui.templateCombo, "Regression")
    dock.ui.nameEdit.clear()
    dock.ui.tuneList.setCurrentRow(row)
    dock.ui.duplicateButton.click()
    assert dock.ui.nameEdit.text() == "form-tune-copy"
    assert dock.ui.templateCombo.currentText() == "timm_resnet : Segmentation"
    assert dock.ui.backboneCombo.currentData() == "timm_resnet18"
    assert dock.ui.datasetCombo.currentData() == trained_tune["dataset_id"]
    assert dock.form.field("optimizer.lr").text() == "0.001" and dock.form.field("runner.max_epochs").value() == 1
    assert dock.form.values() == {"runner": {"max_epochs": 1}, "data": {"crop_size": 64},
                                  "model": {"decode_head": {"channels": 32}}, "optimizer": {"lr": 0.001}}
    assert dock.ui.stageLabel.text().startswith("Duplicated form-tune") and dock.ui.startButton.isEnabled()


# ------------------------------------------------------------------ Cancel, then Resume
@pytest.mark.training
def test_cancel_keeps_the_tune_and_resume_continues_its_curve(plugin, trained_tune):
    from geostudio_plugin import contract, workspace_index

    dock = _open(plugin)
    _fill_tiny(dock, trained_tune["dataset_id"], "to resume", epochs=3)
    dock.ui.startButton.click()
    saved = []
    dock.task.eventReceived.connect(lambda e: saved.append(e) if contract.is_log(e) and
                                    "last checkpoint saved" in str(e.get("message")) else None)
    wait_for(lambda: dock.task is None or saved, timeout=300)
    assert saved, dock.ui.stageLabel.text()
    dock.ui.cancelButton.click()
    wait_for(lambda: dock.task is None, timeout=120)
    text = dock.ui.stageLabel.text()
    assert text.startswith("Cancelled after ") and text.endswith("Resume continues it."), text
    row = _row(dock, "to-resume — timm_resnet18 — Cancelled")
    assert dock.ui.tuneList.currentRow() == row and dock.ui.resumeButton.isEnabled()
    tune_id = dock.ui.tuneList.item(row).toolTip()
    kept = next(r for r in workspace_index.tunes() if r["tune_id"] == tune_id)
    done = kept["epochs_run"]
    assert 1 <= done < 3 and f"{done}/3 epochs" in dock.ui.tuneList.item(row).text()
    assert [e for e, _v in dock.curve.points("train/loss")] == list(range(done))  # its curve so far

    dock.ui.resumeButton.click()
    assert dock.task is not None
    assert dock.ui.stageLabel.text() == f"to-resume: resuming after epoch {done} of 3…"
    assert [e for e, _v in dock.curve.points("train/loss")] == list(range(done))  # kept on screen, continued
    epochs_seen = []
    dock.task.eventReceived.connect(lambda e: epochs_seen.append(e.get("epoch"))
                                    if contract.is_metric(e) and e.get("name") == "train/loss" else None)
    wait_for(lambda: dock.task is None, timeout=300)
    assert epochs_seen and min(epochs_seen) == done  # no restart from epoch 0
    row = _row(dock, "to-resume — timm_resnet18 — Finished")
    assert dock.ui.tuneList.item(row).toolTip() == tune_id and " · 3 epochs · " in dock.ui.tuneList.item(row).text()
    assert [e for e, _v in dock.curve.points("train/loss")] == [0, 1, 2]
    assert not dock.ui.resumeButton.isEnabled()
