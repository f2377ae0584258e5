"""The Fine-tuning dock's Weights choice: where the backbone starts (random, the Hugging Face cache, or a local
checkpoint), remembered per backbone in the settings; and how a download's progress reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from qgis.PyQt.QtCore import QObject, Qt
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QWidget

from .. import settings

RANDOM, PRETRAINED, FILE = settings.WEIGHTS_RANDOM, settings.WEIGHTS_PRETRAINED, settings.WEIGHTS_FILE
PICK = "pick"  # the "Local checkpoint…" entry: opens the file picker
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)"
TOOLTIP = ("Where the backbone starts.\n"
           "Random initialisation (default): needs nothing, so it works on an offline machine; it learns more "
           "slowly.\n"
           "Pre-trained: the backbone's published weights, read from the Hugging Face cache; Download fetches them "
           "(Settings > Allow downloads must be on).\n"
           "Local checkpoint…: a file you have (.pt, .pth, .ckpt, .safetensors), remembered for this backbone.")
KIND = Qt.ItemDataRole.UserRole  # random, pretrained, file or pick
PATH = Qt.ItemDataRole.ToolTipRole  # a file entry's full path (its tooltip)


def human_bytes(count: float) -> str:
    """412 MB, 1.2 GB, 640 kB."""
    if count >= 1e9:
        return f"{count / 1e9:.1f} GB"
    if count >= 1e6:
        return f"{count / 1e6:.0f} MB" if count >= 1e8 else f"{count / 1e6:.1f} MB"
    return f"{count / 1e3:.0f} kB"


def download_text(event: Mapping[str, Any]) -> str:
    """A download progress event as the stage label says it: "412 MB of 1.2 GB at 8.3 MB/s"."""
    done, total, speed = (float(event.get(k) or 0) for k in ("bytes", "total", "bytes_per_s"))
    text = f"{human_bytes(done)} of {human_bytes(total)}" if total else human_bytes(done)
    return f"{text} at {speed / 1e6:.1f} MB/s"


class WeightsChoice(QObject):
    """Drives the weights combo for the backbone picked: its entries, what is selected, what the spec gets."""

    def __init__(self, combo: QComboBox, parent: QWidget) -> None:
        super().__init__(parent)
        self.combo = combo
        self.parent_widget = parent
        self.backbone = ""
        self._quiet = False  # set while the dock, not the user, changes the selection
        combo.setToolTip(TOOLTIP)
        combo.currentIndexChanged.connect(self._picked)

    def show_backbone(self, backbone: str) -> None:
        """The entries for ``backbone``, with its remembered checkpoint, and its remembered choice selected."""
        self.backbone = backbone or ""
        self._fill()
        choice = settings.weights_choice(self.backbone) if self.backbone else RANDOM
        if choice == FILE and not settings.weights_file(self.backbone):
            choice = RANDOM
        self._select(choice)

    def _fill(self) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("Random initialisation")
        self.combo.setItemData(0, RANDOM, KIND)
        self.combo.addItem("Pre-trained (Hugging Face cache)")
        self.combo.setItemData(1, PRETRAINED, KIND)
        path = settings.weights_file(self.backbone) if self.backbone else ""
        if path:
            self.combo.addItem(f"File: {Path(path).name}", FILE)
            self.combo.setItemData(self.combo.count() - 1, path, PATH)
        self.combo.addItem("Local checkpoint…")
        self.combo.setItemData(self.combo.count() - 1, PICK, KIND)
        self.combo.blockSignals(False)

    def _select(self, kind: str) -> None:
        index = next((i for i in range(self.combo.count()) if self.combo.itemData(i, KIND) == kind), 0)
        self._quiet = True
        try:
            self.combo.setCurrentIndex(index)
        finally:
            self._quiet = False

    def kind(self) -> str:
        return str(self.combo.currentData(KIND) or RANDOM)

    def value(self) -> str:
        """What ``contract.tune_spec(weights=...)`` gets: random, pretrained or the checkpoint's path."""
        kind = self.kind()
        return str(self.combo.currentData(PATH)) if kind == FILE else kind if kind in (RANDOM, PRETRAINED) else RANDOM

    def choose(self, kind: str, path: str = "") -> None:
        """Select and remember a choice for the current backbone (``path`` with FILE)."""
        if not self.backbone:
            return
        if kind == FILE:
            settings.set_weights_file(self.backbone, path)
            self._fill()
        settings.set_weights_choice(self.backbone, kind)
        self._select(kind)

    def _picked(self, index: int) -> None:
        if self._quiet or index < 0:
            return
        kind = self.combo.itemData(index, KIND)
        if kind == PICK:
            self.pick_file()
        elif kind in (RANDOM, PRETRAINED, FILE) and self.backbone:
            settings.set_weights_choice(self.backbone, kind)

    def pick_file(self) -> Optional[str]:
        """The file picker; Cancel goes back to the backbone's remembered choice."""
        start = settings.weights_file(self.backbone) or settings.last_folder() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, f"Starting weights for {self.backbone}", start,
                                              CHECKPOINT_FILTER)
        if not path:
            self.show_backbone(self.backbone)
            return None
        settings.set_last_folder(str(Path(path).parent))
        self.choose(FILE, path)
        return path
