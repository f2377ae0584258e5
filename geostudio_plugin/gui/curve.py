"""A small training curve (QPainter only) for the Fine-tuning dock: train and validation loss over epochs on the
left scale, and the task's validation metric (mIoU for segmentation, RMSE for regression) dashed on its own scale at
the right, since a metric and a loss rarely share a range."""

from __future__ import annotations

from typing import Optional

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

COLOURS = {"train/loss": "#2166ac", "val/loss": "#d6604d", "val/mIoU": "#1b7837", "val/RMSE": "#1b7837"}
SECONDARY = ("val/mIoU", "val/RMSE")  # drawn dashed against the right-hand scale


class CurveWidget(QWidget):
    """``add(name, epoch, value)`` as metrics arrive; ``clear()`` when the run they belong to is gone."""

    def __init__(self, parent: Optional[QWidget] = None, names: tuple[str, ...] = tuple(COLOURS)) -> None:
        super().__init__(parent)
        self.names = names
        self.series: dict[str, dict[int, float]] = {}
        self.setObjectName("curveWidget")
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Loss per epoch: train (blue) and validation (red), lower is better; the validation "
                        "mIoU (higher is better) or RMSE (lower is better) dashed in green, scale at the right")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(240, 120)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(120, 110)

    def add(self, name: str, epoch: int, value: float) -> None:
        if name in self.names:
            self.series.setdefault(name, {})[int(epoch)] = float(value)
            self.update()

    def clear(self) -> None:
        self.series = {}
        self.update()

    def points(self, name: str) -> list[tuple[int, float]]:
        return sorted(self.series.get(name, {}).items())

    def scale(self, names: list[str]) -> tuple[float, float]:
        """(low, high) of the named series together; an mIoU keeps its natural 0-1 range."""
        values = [v for n in names for v in self.series.get(n, {}).values()]
        low, high = min(values), max(values)
        if all(n == "val/mIoU" for n in names):
            low, high = min(low, 0.0), max(high, 1.0)
        return low, (high if high > low else low + 1.0)

    def paintEvent(self, _event) -> None:  # noqa: N802, ANN001 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = painter.fontMetrics()
        label_width = metrics.horizontalAdvance("-0.000") + 4  # room for the value labels at the left
        line = metrics.height()
        area = QRectF(self.rect()).adjusted(label_width + 4, line / 2 + 2, -8, -(line + 4))
        primary = [n for n in self.names if n not in SECONDARY and self.series.get(n)]
        secondary = [n for n in self.names if n in SECONDARY and self.series.get(n)]
        if secondary:  # room for the right-hand scale
            area.setRight(area.right() - label_width + 4)
        painter.setPen(QPen(QColor("#999999")))
        painter.drawRect(area)
        epochs = [e for s in self.series.values() for e in s]
        if not epochs:
            painter.drawText(area.adjusted(4, 0, -4, 0), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                             "The loss curve appears as epochs end.")
            painter.end()
            return
        first, last = min(epochs), max(max(epochs), min(epochs) + 1)
        painter.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), line), Qt.AlignmentFlag.AlignCenter,
                         f"epoch {first + 1} – {last + 1}")
        for names, right in ((primary, False), (secondary, True)):
            if not names:
                continue
            low, high = self.scale(names)
            label = QRectF(area.right() + 4 if right else 0, 0, label_width, line)
            align = Qt.AlignmentFlag.AlignLeft if right else Qt.AlignmentFlag.AlignRight
            painter.setPen(QPen(QColor(COLOURS[names[0]] if right else "#999999")))
            painter.drawText(label.translated(0, area.top() - line / 2), align, f"{high:.2f}")
            painter.drawText(label.translated(0, area.bottom() - line / 2), align, f"{low:.2f}")
            for name in names:
                pen = QPen(QColor(COLOURS.get(name, "#333333")))
                pen.setWidthF(2.0)
                if right:
                    pen.setStyle(Qt.PenStyle.DashLine)
                painter.setPen(pen)
                xy = [QPointF(area.left() + area.width() * (e - first) / (last - first),
                              area.bottom() - area.height() * (v - low) / (high - low)) for e, v in self.points(name)]
                for a, b in zip(xy, xy[1:]):
                    painter.drawLine(a, b)
                for p in xy:
                    painter.drawEllipse(p, 2.5, 2.5)
        self._legend(painter, area)
        painter.end()

    def _legend(self, painter: QPainter, area: QRectF) -> None:
        """Which line is which, in the plot's top-right corner: a short stroke and the metric's name."""
        metrics = painter.fontMetrics()
        line = metrics.height()
        shown = [n for n in self.names if self.series.get(n)]
        text_width = max(metrics.horizontalAdvance(n) for n in shown) if shown else 0
        left = area.right() - text_width - 24
        y = area.top() + 4 + line / 2
        painter.fillRect(QRectF(left - 3, area.top() + 2, text_width + 27, line * len(shown) + 4),
                         QColor(255, 255, 255, 190))  # the lines stay readable under it
        for name in shown:
            pen = QPen(QColor(COLOURS.get(name, "#333333")))
            pen.setWidthF(2.0)
            if name in SECONDARY:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawLine(QPointF(left, y), QPointF(left + 14, y))
            painter.setPen(QPen(QColor("#333333")))
            painter.drawText(QRectF(left + 18, y - line / 2, text_width + 4, line), Qt.AlignmentFlag.AlignLeft, name)
            y += line
