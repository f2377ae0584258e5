"""The Fine-tuning dock's curve: losses on the left scale, the validation metric dashed on its own right scale."""

from __future__ import annotations


def _colour_columns(image, colour: str) -> set[int]:
    from qgis.PyQt.QtGui import QColor

    wanted = QColor(colour)
    hits = set()
    for x in range(image.width()):
        for y in range(image.height()):
            pixel = QColor(image.pixel(x, y))
            if abs(pixel.red() - wanted.red()) + abs(pixel.green() - wanted.green()) + \
                    abs(pixel.blue() - wanted.blue()) < 40:
                hits.add(y)
    return hits


def test_the_metric_gets_its_own_scale_and_the_losses_keep_theirs(qgis_app):
    from geostudio_plugin.gui.curve import COLOURS, CurveWidget

    curve = CurveWidget()
    curve.resize(320, 160)
    for epoch, (train, val, miou) in enumerate([(2.0, 2.2, 0.30), (1.0, 1.4, 0.55), (0.5, 0.9, 0.70)]):
        curve.add("train/loss", epoch, train)
        curve.add("val/loss", epoch, val)
        curve.add("val/mIoU", epoch, miou)
    curve.add("test/mIoU", 2, 0.9)  # not a curve: ignored
    assert curve.points("val/mIoU") == [(0, 0.30), (1, 0.55), (2, 0.70)] and not curve.points("test/mIoU")
    assert curve.scale(["train/loss", "val/loss"]) == (0.5, 2.2)
    assert curve.scale(["val/mIoU"]) == (0.0, 1.0)  # an mIoU keeps its 0-1 range

    image = curve.grab().toImage()
    green = _colour_columns(image, COLOURS["val/mIoU"])
    blue = _colour_columns(image, COLOURS["train/loss"])
    assert green and blue
    # On a shared scale the metric (0.3-0.7 of 0.5-2.2) would sit at the bottom; on its own 0-1 scale its rows span
    # the middle of the plot, away from the loss's lowest point.
    height = image.height()
    assert min(green) < height * 0.6 and max(green) > height * 0.3

