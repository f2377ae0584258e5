"""The QGIS side is ready for Qt 6 / QGIS 4 and runs on QGIS 3.22 to 3.44 alike (issue 11).

A grep over geostudio_plugin/**/*.py (engine/ excluded: its own Python, no Qt) for what PyQt6 or QGIS 4 no longer
has: PyQt imported past qgis.PyQt, PyQt5-only APIs (exec_, QRegExp, QDesktopWidget, desktop(), the QFlags
classes), unscoped enum spellings (``Qt.AlignLeft`` for ``Qt.AlignmentFlag.AlignLeft``), and the old QGIS enum
spellings that moved into ``Qgis`` (those belong in geostudio_plugin/compat.py only). Comments and strings are
not code and are not read. Each finding names file:line, the text and the spelling to use.
"""

from __future__ import annotations

import enum
import io
import re
import tokenize
from pathlib import Path
from typing import NamedTuple, Optional

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "geostudio_plugin"
COMPAT = PACKAGE / "compat.py"

# (regex, what to write instead); matched against code with comments and strings blanked out.
FORBIDDEN: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^\s*(?:from|import)\s+(?:PyQt5|PyQt6|PySide2|PySide6|sip)\b"),
     "import from qgis.PyQt (from qgis.PyQt.QtCore import ..., from qgis.PyQt import sip)"),
    (re.compile(r"\bexec_\("), "exec() (exec_ is PyQt5 only)"),
    (re.compile(r"\bprint_\("), "print() (print_ is PyQt5 only)"),
    (re.compile(r"\bQRegExp\w*\b"), "QRegularExpression (QRegExp is gone in Qt 6)"),
    (re.compile(r"\bQDesktopWidget\b"), "QScreen (QGuiApplication.primaryScreen() / widget.screen())"),
    (re.compile(r"\.desktop\(\)"), "QScreen (QApplication.desktop() is gone in Qt 6)"),
    (re.compile(r"\b(?:QFontMetrics\w*\([^)]*\)|fontMetrics\(\))\.width\("),
     "horizontalAdvance() (QFontMetrics.width() is gone in Qt 6)"),
    (re.compile(r"\bQVariant\.(?:Type\.)?[A-Z]\w*"), "QMetaType.Type.<Name> (QVariant.Type is gone in Qt 6)"),
    (re.compile(r"\b(?:QMessageBox|QDialogButtonBox)\.StandardButtons\b"),
     "QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No (PyQt6 has no QFlags classes)"),
    (re.compile(r"\bQt\.MidButton\b"), "Qt.MouseButton.MiddleButton"),
]

# Enums that moved into Qgis: the old spellings are gone in QGIS 4, the new ones are missing on 3.22. Only
# compat.py may name them (and it does so through getattr).
MOVED_TO_QGIS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bQgsMapLayerProxyModel\.(?:Filter\.)?[A-Z]\w*"), "compat.LAYER_FILTER_RASTER (Qgis.LayerFilter)"),
    (re.compile(r"\bQgsColorRampShader\.(?:Type|ClassificationMode)\b"),
     "compat.SHADER_INTERPOLATED (Qgis.ShaderInterpolationMethod)"),
    (re.compile(r"\bQgsRasterBandStats\.(?:Stats\b|[A-Z]\w*)"),
     "compat.BAND_STAT_MIN / BAND_STAT_MAX (Qgis.RasterBandStatistic)"),
    (re.compile(r"\bQgsRasterMinMaxOrigin\.(?:Limits|Extent|StatAccuracy)\b"),
     "compat.RANGE_LIMIT_CUMULATIVE_CUT (Qgis.RasterRangeLimit)"),
    (re.compile(r"\bQgsProcessing\.Type\w+"), "a compat name for Qgis.ProcessingSourceType (3.36)"),
    (re.compile(r"\bQgsProcessingParameter(?:Number|File|Field|DateTime)\.(?:Integer|Double|File|Folder|Any|"
                r"Numeric|String|DateTime|Date|Time)\b"),
     "a compat name for Qgis.ProcessingNumberParameterType / ProcessingFileParameterBehavior / ..."),
    (re.compile(r"\bQgsProcessingAlgorithm\.Flag\w*"), "a compat name for Qgis.ProcessingAlgorithmFlag (3.36)"),
    (re.compile(r"\bQgsWkbTypes\.(?!geometryType|isMultiType|flatType|displayString|hasZ|hasM|singleType|multiType)"
                r"[A-Z]\w*"), "a compat name for Qgis.WkbType / Qgis.GeometryType (3.30)"),
    (re.compile(r"\bQgsMapLayer\.(?:VectorLayer|RasterLayer|PluginLayer|MeshLayer|LayerType)\b"),
     "a compat name for Qgis.LayerType (3.30)"),
    (re.compile(r"\bQgsUnitTypes\.[A-Z]\w*"), "a compat name for Qgis.DistanceUnit / Qgis.AreaUnit / ... (3.30)"),
]

# ``Class.Member`` as the last attribute, Member capitalised: an unscoped enum value (``Qt.AlignLeft``).
UNSCOPED = re.compile(r"\bQ(?:t|gs\w*|\w+)\.[A-Z]\w*\b(?![.(\w])")

# Class.Member pairs matched by UNSCOPED that are not enum values: nested classes, enum and flag *types*.
NOT_ENUM_VALUES = {
    "QgsTask.Flag",  # the enum type, for getattr(QgsTask.Flag, "Silent", None) (tasks.py)
    "QgsTask.Flags",
    "QgsTask.TaskStatus",
    "QgsPalettedRasterRenderer.Class",
    "QgsColorRampShader.ColorRampItem",
    "QgsRasterTransparency.TransparentSingleValuePixel",
}


class Finding(NamedTuple):
    where: str
    text: str
    hint: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}  ->  {self.hint}"


def code_lines(source: str) -> list[str]:
    """The source's lines with comments and string literals blanked (docstrings name old spellings freely)."""
    lines = source.splitlines()
    blank = [list(line) for line in lines]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError):  # a fragment: keep it as it is, minus # comments
        return [line.split("#", 1)[0] for line in lines]
    for tok in tokens:
        if tok.type not in (tokenize.COMMENT, tokenize.STRING) and tok.type != getattr(tokenize, "FSTRING_MIDDLE", -1):
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for row in range(r0, r1 + 1):
            chars = blank[row - 1]
            start = c0 if row == r0 else 0
            end = c1 if row == r1 else len(chars)
            for i in range(start, min(end, len(chars))):
                chars[i] = " "
    return ["".join(chars) for chars in blank]


def scoped_hint(owner: str, member: str) -> str:
    """``Owner.Enum.Member`` found by asking the real class which of its enum types holds Member."""
    import qgis.core
    import qgis.gui
    from qgis.PyQt import QtCore, QtGui, QtWidgets

    for module in (QtCore, QtWidgets, QtGui, qgis.core, qgis.gui):
        cls = getattr(module, owner, None)
        if cls is None:
            continue
        holders = [name for name in dir(cls) if not name.startswith("_") and name != member
                   and isinstance(getattr(cls, name, None), type) and hasattr(getattr(cls, name), member)]
        holders.sort(key=lambda n: (n.endswith("s"), n))  # the enum (AlignmentFlag) before its flags (Alignment)
        if holders:
            return f"{owner}.{holders[0]}.{member}"
    return f"{owner}.<EnumType>.{member} (fully scoped)"


def check_source(source: str, where: str = "<source>", moved_allowed: bool = False) -> list[Finding]:
    found = []
    for number, line in enumerate(code_lines(source), start=1):
        here = f"{where}:{number}"
        for pattern, hint in FORBIDDEN + ([] if moved_allowed else MOVED_TO_QGIS):
            for match in pattern.finditer(line):
                found.append(Finding(here, match.group(0).strip(), hint))
        for match in UNSCOPED.finditer(line):
            text = match.group(0)
            owner, member = text.split(".", 1)
            if text in NOT_ENUM_VALUES or member.isupper() or re.match(r"Q[A-Z]|Qgs", member):
                continue  # a nested type, a constant (CUMULATIVE_CUT_LOWER) or a class reached through a module
            if any(text in f.text for f in found if f.where == here):
                continue  # already reported by a more specific rule
            found.append(Finding(here, text, scoped_hint(owner, member)))
    return found


def plugin_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "__pycache__" not in p.parts and p.relative_to(PACKAGE).parts[0] != "engine")


def test_the_plugin_code_is_ready_for_qt6():
    findings = []
    for path in plugin_files():
        findings += check_source(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)),
                                 moved_allowed=path == COMPAT)
    assert len(plugin_files()) > 20  # the walk found the package
    assert not findings, "Qt 6 / QGIS 4 spellings to fix:\n" + "\n".join(map(str, findings))


def test_the_checker_finds_what_it_should():
    bad = {
        "label.setAlignment(Qt.AlignLeft)": "Qt.AlignmentFlag.AlignLeft",
        "dlg.exec_()": "exec()",
        "from PyQt5.QtCore import Qt": "qgis.PyQt",
        "import sip": "qgis.PyQt",
        "rx = QRegExp('a+')": "QRegularExpression",
        "w = QApplication.desktop().width()": "QScreen",
        "policy = QSizePolicy.Expanding": "QSizePolicy.Policy.Expanding",
        "view.setSelectionBehavior(QAbstractItemView.SelectRows)": "QAbstractItemView.SelectionBehavior.SelectRows",
        "bar.pushMessage('t', 'm', Qgis.Info)": "Qgis.MessageLevel.Info",
        "task = QgsTask('x', QgsTask.CanCancel)": "QgsTask.Flag.CanCancel",
        "combo.setFilters(QgsMapLayerProxyModel.RasterLayer)": "compat.LAYER_FILTER_RASTER",
        "combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)": "compat.LAYER_FILTER_RASTER",
        "p = QgsProcessingParameterFile('F', 'f', behavior=QgsProcessingParameterFile.Folder)": "compat",
        "t = QgsProcessing.TypeRaster": "Qgis.ProcessingSourceType",
        "b = QMessageBox.StandardButtons(QMessageBox.StandardButton.Yes)": "PyQt6 has no QFlags",
    }
    for line, hint in bad.items():
        findings = check_source(line)
        assert findings, f"not caught: {line}"
        assert any(hint in f.hint for f in findings), (line, [str(f) for f in findings])
        assert all(f.where == "<source>:1" for f in findings)

    good = [
        "label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)",
        "project = QgsProject.instance()",
        "from qgis.PyQt.QtWidgets import QAction, QMessageBox",
        "from qgis.PyQt import sip",
        "dlg.exec()",
        "answer = QMessageBox.question(self, 't', 'q', QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)",
        "renderer = QgsPalettedRasterRenderer.Class(1, QColor('red'), 'water')",
        "lower = QgsRasterMinMaxOrigin.CUMULATIVE_CUT_LOWER",
        "silent = getattr(QgsTask.Flag, 'Silent', None)",
        "x = 1  # Qt.AlignLeft in a comment is fine",
        "text = 'Qt.AlignLeft and exec_() inside a string are fine'",
        "action = QtWidgets.QAction",
        "combo.setFilters(compat.LAYER_FILTER_RASTER)",
    ]
    for line in good:
        assert check_source(line) == [], (line, [str(f) for f in check_source(line)])

    many = check_source("a = 1\nb = Qt.AlignLeft\n", "pkg/mod.py")
    assert [str(f) for f in many] == ["pkg/mod.py:2: Qt.AlignLeft  ->  Qt.AlignmentFlag.AlignLeft"]
    # compat.py alone may name the moved spellings (it reaches them through getattr anyway)
    assert check_source("x = QgsMapLayerProxyModel.Filter.RasterLayer", moved_allowed=True) == []


def _is_enum_value(value: object) -> bool:
    # PyQt5/sip enums (3.22) subclass int; PyQt6 enums are enum.Enum members
    return value is not None and isinstance(value, (int, enum.Enum)) and not isinstance(value, bool)


def _as_int(value: object) -> int:
    return int(value.value) if isinstance(value, enum.Enum) else int(value)  # type: ignore[arg-type]


def test_compat_names_are_real_enum_values_here():
    from qgis.core import QgsColorRampShader, QgsMapLayerProxyModel, QgsRasterMinMaxOrigin

    from geostudio_plugin import compat

    values = {name: getattr(compat, name) for name in compat.__all__}
    assert len(values) >= 5
    bad: dict[str, Optional[object]] = {name: value for name, value in values.items() if not _is_enum_value(value)}
    assert bad == {}

    # and each one is what the API it is for accepts and gives back
    proxy = QgsMapLayerProxyModel()
    proxy.setFilters(compat.LAYER_FILTER_RASTER)
    assert _as_int(proxy.filters()) == _as_int(compat.LAYER_FILTER_RASTER)
    shader = QgsColorRampShader(0.0, 1.0)
    shader.setColorRampType(compat.SHADER_INTERPOLATED)
    assert shader.colorRampType() == compat.SHADER_INTERPOLATED
    origin = QgsRasterMinMaxOrigin()
    origin.setLimits(compat.RANGE_LIMIT_CUMULATIVE_CUT)
    assert origin.limits() == compat.RANGE_LIMIT_CUMULATIVE_CUT
    assert compat.BAND_STAT_MIN != compat.BAND_STAT_MAX
    assert (compat.BAND_STAT_MIN | compat.BAND_STAT_MAX) is not None
