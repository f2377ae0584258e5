"""A template's parameters as a form, generated from its schema (the Studio's parameter tabs).

One tab per top-level group (data, model, runner, lr_config, optimizer, evaluation), a box per nested group
(model > decode head > loss), a labelled field per parameter with its default filled in: a spin box for a
whole number, a text field for a number (it takes 6e-05), a check box for true/false, a list for a choice,
a text field for free text. A value the template does not allow is flagged as it is entered (a red frame, and
a message naming the parameter and what it takes); ``problems()`` says what blocks Start. ``values()`` gives
only what differs from the template's defaults, nested as the tune's ``model_parameters``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from qgis.PyQt.QtCore import QSize, pyqtSignal
from qgis.PyQt.QtGui import QColor, QFont
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLayout, QLineEdit, QSizePolicy,
                                 QSpinBox, QStyle, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from .. import parameter_rules as rules

PROBLEM_COLOUR = "#b2182b"
PROBLEM_FRAME = f"border: 1px solid {PROBLEM_COLOUR};"
INT_LIMIT = 2 ** 31 - 1


class Field:
    """One parameter: its widget, how to read and set it, and its label (bold when changed from the default)."""

    def __init__(self, path: str, prop: dict[str, Any], on_change: Callable[[], None]) -> None:
        self.path, self.prop = path, prop
        self.label = QLabel(rules.label(path, prop))
        self.label.setWordWrap(True)
        self.default = self._coerced(prop.get("default"))
        kind = prop.get("type")
        if "enum" in prop:
            self.widget: QWidget = QComboBox()
            self.widget.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.widget.setMinimumContentsLength(10)
            for choice in prop["enum"]:
                self.widget.addItem(rules.shown(choice), choice)
            self.widget.currentIndexChanged.connect(lambda _i: on_change())
        elif kind == "integer":
            self.widget = QSpinBox()
            self.widget.setRange(*self._spin_range())
            if "offValue" in prop and prop["offValue"] == self.widget.minimum():
                self.widget.setSpecialValueText(f"{rules.shown(prop['offValue'])} (off)")
            self.widget.valueChanged.connect(lambda _v: on_change())
        elif kind == "boolean":
            self.widget = QCheckBox()
            self.widget.toggled.connect(lambda _b: on_change())
        else:  # a number (any notation: 6e-05) or free text
            self.widget = QLineEdit()
            self.widget.textChanged.connect(lambda _t: on_change())
        self.widget.setObjectName(f"param.{path}")
        self.label.setBuddy(self.widget)
        tip = " ".join(t for t in (str(prop.get("description") or "").strip(),
                                   f"Takes {rules.allowed(prop)}.",
                                   f"Default: {rules.shown(prop['default'])}." if "default" in prop else "") if t)
        tip = f"{tip}\n({path})"
        self.widget.setToolTip(tip)
        self.label.setToolTip(tip)
        self.set(prop.get("default"))

    def _coerced(self, value: Any) -> Any:
        try:
            return rules.coerce(value, self.prop) if value is not None else None
        except ValueError:
            return value

    def _spin_range(self) -> tuple[int, int]:
        prop = self.prop
        low = prop.get("minimum", prop["exclusiveMinimum"] + 1 if "exclusiveMinimum" in prop else -INT_LIMIT)
        high = prop.get("maximum", prop["exclusiveMaximum"] - 1 if "exclusiveMaximum" in prop else INT_LIMIT)
        if isinstance(prop.get("offValue"), int):
            low, high = min(low, prop["offValue"]), max(high, prop["offValue"])
        return int(max(low, -INT_LIMIT)), int(min(high, INT_LIMIT))

    def raw(self) -> Any:
        """What the field holds, as entered (text for a number or free text)."""
        widget = self.widget
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QSpinBox):
            return widget.value()
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        return widget.text()

    def value(self) -> Any:
        """The entered value as the engine reads it; ValueError when it is not of the parameter's type."""
        return rules.coerce(self.raw(), self.prop)

    def set(self, value: Any) -> None:
        widget = self.widget
        if value is None:
            return
        if isinstance(widget, QComboBox):
            index = widget.findData(self._coerced(value))
            if index < 0:  # a value the list does not offer stays visible, and is flagged
                widget.addItem(rules.shown(value), value)
                index = widget.count() - 1
            widget.setCurrentIndex(index)
        elif isinstance(widget, QSpinBox):
            try:
                widget.setValue(int(self._coerced(value)))
            except (TypeError, ValueError):
                pass  # not a whole number: the spin box keeps its value
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(self._coerced(value)))
        else:
            widget.setText(rules.shown(self._coerced(value)))

    def changed(self) -> bool:
        try:
            return self.value() != self.default
        except ValueError:
            return True


class FittingTabs(QTabWidget):
    """Tabs as tall as the page shown (QTabWidget asks every page for its height, leaving a band under short ones)."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        pages = [self.widget(i).sizeHint().height() for i in range(self.count())]
        if self.currentWidget() is None or not pages:
            return hint
        return QSize(hint.width(), hint.height() - max(pages) + self.currentWidget().sizeHint().height())

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API (wrapped labels make the pages height-for-width)
        height = super().heightForWidth(width)
        pages = [self._page_height(self.widget(i), width) for i in range(self.count())]
        if self.currentWidget() is None or not pages or height < 0:
            return height
        return height - max(pages) + self._page_height(self.currentWidget(), width)

    @staticmethod
    def _page_height(page: QWidget, width: int) -> int:
        return page.heightForWidth(width) if page.hasHeightForWidth() else page.sizeHint().height()


class ParameterForm(QWidget):
    """``set_schema(schema)`` builds it; ``values()``, ``set_values()``, ``problems()``; ``changed`` on any edit."""

    changed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("parameterForm")
        self.schema: dict[str, Any] = {}
        self.fields: dict[str, Field] = {}
        self._problems: dict[str, str] = {}
        self._building = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tabs = FittingTabs(self)
        self.tabs.setObjectName("parameterTabs")
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setDocumentMode(True)
        layout.addWidget(self.tabs)
        self.tabs.currentChanged.connect(self._fit_current_tab)
        self._explain_scroll_buttons()
        self.problemLabel = QLabel(self)
        self.problemLabel.setObjectName("parameterProblemLabel")
        self.problemLabel.setWordWrap(True)
        self.problemLabel.setStyleSheet(f"color: {PROBLEM_COLOUR};")
        self.problemLabel.hide()
        layout.addWidget(self.problemLabel)

    def _explain_scroll_buttons(self) -> None:
        """The tab bar's arrows (a narrow panel has no room for six tabs): said what they do, and left at the width
        the tab bar gives them."""
        bar = self.tabs.tabBar()
        width = bar.style().pixelMetric(QStyle.PixelMetric.PM_TabBarScrollButtonWidth, None, bar)
        for button in bar.findChildren(QToolButton):
            button.setToolTip("More parameter groups" if "Right" in button.objectName() else "Earlier parameter groups")
            button.setMaximumWidth(max(width, 1))

    # -------------------------------------------------------------- building
    def set_schema(self, schema: Mapping[str, Any], keep: bool = True) -> None:
        """Build the form for a template's ``model_params``; values the user changed are kept where the new
        schema has a parameter of the same path."""
        kept = self.values() if keep and self.fields else {}
        self._building = True
        while self.tabs.count():
            page = self.tabs.widget(0)
            self.tabs.removeTab(0)
            page.deleteLater()
        self.schema, self.fields = dict(schema or {}), {}
        for key, prop in (self.schema.get("properties") or {}).items():
            page = QWidget()
            page.setObjectName(f"paramTab.{key}")
            form = self._form(page)
            form.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)  # a hidden page may be shorter
            if prop.get("type") == "object":
                self._fill(form, prop, f"{key}.")
            else:  # a parameter outside any group gets a tab of its own
                self._add_field(form, key, prop)
            self.tabs.addTab(page, rules.humanise(key))
            self.tabs.setTabToolTip(self.tabs.count() - 1, str(prop.get("description") or rules.humanise(key)))
        self._building = False
        self.set_values(kept)
        self._validate()
        self._fit_current_tab()

    def _fit_current_tab(self, _index: int = -1) -> None:
        """The tabs take the height of the page shown, not of the longest one (no empty band under short tabs)."""
        for index in range(self.tabs.count()):
            policy = QSizePolicy.Policy.Preferred if index == self.tabs.currentIndex() else QSizePolicy.Policy.Ignored
            self.tabs.widget(index).setSizePolicy(policy, policy)
            self.tabs.widget(index).adjustSize()
        self.tabs.updateGeometry()
        self.updateGeometry()

    @staticmethod
    def _form(parent: QWidget) -> QFormLayout:
        form = QFormLayout(parent)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return form

    def _fill(self, form: QFormLayout, group: Mapping[str, Any], prefix: str) -> None:
        for key, prop in (group.get("properties") or {}).items():
            if prop.get("type") == "object":
                box = QGroupBox(str(prop.get("title") or rules.humanise(key)))
                box.setObjectName(f"paramGroup.{prefix}{key}")
                if prop.get("description"):
                    box.setToolTip(str(prop["description"]))
                self._fill(self._form(box), prop, f"{prefix}{key}.")
                form.addRow(box)
            else:
                self._add_field(form, f"{prefix}{key}", prop)

    def _add_field(self, form: QFormLayout, path: str, prop: dict[str, Any]) -> None:
        field = Field(path, prop, self._on_change)
        self.fields[path] = field
        form.addRow(field.label, field.widget)

    # ------------------------------------------------------------ reading
    def field(self, path: str) -> QWidget:
        """The widget of the parameter at a dotted path (``optimizer.lr``)."""
        return self.fields[path].widget

    def values(self) -> dict[str, Any]:
        """The values that differ from the template's defaults, nested (``{"optimizer": {"lr": 0.0001}}``); a value
        that is not valid is left out (``problems`` names it)."""
        changed = {}
        for path, field in self.fields.items():
            try:
                value = field.value()
            except ValueError:
                continue
            if value != field.default and not (value == "" and field.default is None):
                changed[path] = value
        return rules.nest(changed)

    def all_values(self) -> dict[str, Any]:
        """Every parameter's value as entered (flat, dotted paths); invalid ones as their raw text."""
        out = {}
        for path, field in self.fields.items():
            try:
                out[path] = field.value()
            except ValueError:
                out[path] = field.raw()
        return out

    def set_values(self, values: Mapping[str, Any]) -> list[str]:
        """Fill the form from nested ``model_parameters`` (a tune's record, for Duplicate); the rest go back to
        their defaults. Returns the paths this template has no parameter for (they are not used)."""
        flat = rules.flatten(values or {})
        self._building = True
        for path, field in self.fields.items():
            field.set(flat.get(path, field.prop.get("default")))
        self._building = False
        self._validate()
        return [path for path in flat if path not in self.fields]

    def reset(self) -> None:
        self.set_values({})

    def problems(self) -> dict[str, str]:
        """Parameter path -> what is wrong with its value, naming the parameter and what it takes."""
        return dict(self._problems)

    # ---------------------------------------------------------- checking
    def _on_change(self) -> None:
        if not self._building:
            self._validate()

    def _validate(self) -> None:
        problems: dict[str, str] = {}
        coerced: dict[str, Any] = {}
        for path, field in self.fields.items():
            message = rules.problem(path, field.prop, field.raw())
            if message:
                problems[path] = message
            else:
                coerced[path] = field.value()
        for path, message in rules.sibling_problems(self.schema, coerced).items():
            problems.setdefault(path, message)
        self._problems = problems
        for path, field in self.fields.items():
            field.widget.setStyleSheet(PROBLEM_FRAME if path in problems else "")
            font = QFont(field.label.font())
            font.setBold(field.changed())  # what differs from the template's default stands out
            field.label.setFont(font)
        bad_tabs = {path.split(".", 1)[0] for path in problems}
        for index in range(self.tabs.count()):
            key = self.tabs.widget(index).objectName().split(".", 1)[-1]
            self.tabs.tabBar().setTabTextColor(index, QColor(PROBLEM_COLOUR) if key in bad_tabs else QColor())
        self.problemLabel.setText("\n".join(problems.values()))
        self.problemLabel.setVisible(bool(problems))
        self.changed.emit()
