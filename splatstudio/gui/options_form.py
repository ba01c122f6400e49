"""Stage option forms built from the config metadata (:func:`splatstudio.config.options`).

Every widget takes its range, choices and tooltip from the option's metadata, so the form, the
CLI and ``project.json`` accept the same values: :class:`StageOptionsForm` is one stage's form
(a check box for a bool, a combo box for an enum or a list of choices, a spin box with the
option's range for a number, a line edit for text, formats and crop corners), and
:class:`StageOptionsDialog` has one tab per stage and saves what changed to ``project.json``
through :func:`~splatstudio.config.update_config` (which checks it once more). The Export
dialog uses :func:`configure_spin` and :func:`option_tooltip` for its own widgets.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..config import STAGE_CONFIGS, STAGES, Option, config_to_dict, option, options, update_config
from ..errors import ConfigError

INT_LIMIT = 2_000_000_000
"""Spin box bound of an integer option without one of its own."""
FLOAT_LIMIT = 1e12
"""Spin box bound of a real option without one of its own."""


def option_tooltip(o: Option) -> str:
    """The option's help text, its range and whether changing it re-runs the stage."""
    rng = o.range_text()
    parts = [o.help[:1].upper() + o.help[1:]]
    if rng and not o.is_enum:
        parts.append(f"Range: {rng}.")
    if not o.hash:
        parts.append("Changing it does not re-run the stage.")
    return " ".join(parts)


def _bounds(o: Option, limit: float) -> tuple[float, float]:
    lo = o.min if o.min is not None else (o.above if o.above is not None else -limit)
    hi = o.max if o.max is not None else (o.below if o.below is not None else limit)
    return lo, hi


def configure_spin(box: QSpinBox | QDoubleSpinBox, cfg_type: type, name: str,
                   ui_max: float | None = None) -> Option:
    """Give spin box `box` the range and tooltip of option `name` of `cfg_type` (an open
    bound becomes the nearest step inside it; `ui_max` caps an unbounded maximum)."""
    o = option(cfg_type, name)
    integer = isinstance(box, QSpinBox)
    lo, hi = _bounds(o, INT_LIMIT if integer else FLOAT_LIMIT)
    if ui_max is not None and o.max is None and o.below is None:
        hi = ui_max
    step = 1 if integer else 10 ** -box.decimals()
    if o.above is not None:
        lo += step
    if o.below is not None:
        hi -= step
    box.setRange(int(lo) if integer else lo, int(hi) if integer else hi)
    box.setToolTip(option_tooltip(o))
    return o


def _decimals(v: float, most: int = 6) -> int:
    """Decimals needed to show `v` exactly (at most `most`)."""
    text = f"{float(v):.{most}f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


class StageOptionsForm(QWidget):
    """The options of one stage as a form.

    Args:
        stage: the stage name; cfg: its current config (the values shown).

    Attributes:
        widgets: per option name, its editor widget.
    """

    def __init__(self, stage: str, cfg: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.stage = stage
        self.cfg_type = STAGE_CONFIGS[stage]
        self.widgets: dict[str, QWidget] = {}
        self._options = {o.name: o for o in options(self.cfg_type)}
        form = QFormLayout(self)
        for o in self._options.values():
            w = self._editor(o, getattr(cfg, o.name))
            w.setToolTip(option_tooltip(o))
            self.widgets[o.name] = w
            label = QLabel(o.name.replace("_", " "))
            label.setToolTip(option_tooltip(o))
            form.addRow(label, w)
        self.set_config(cfg)

    def _editor(self, o: Option, value: Any) -> QWidget:
        if o.type is bool:
            return QCheckBox()
        if o.is_enum or o.choices is not None:
            box = QComboBox()
            for c in (list(o.type) if o.is_enum else o.choices):
                box.addItem(str(getattr(c, "value", c)), c)
            return box
        if o.type is int:
            sb = QSpinBox()
            configure_spin(sb, self.cfg_type, o.name)
            sb.setGroupSeparatorShown(True)
            return sb
        if o.type is float:
            sb = QDoubleSpinBox()
            sb.setDecimals(max(2, _decimals(o.default), _decimals(value)))
            configure_spin(sb, self.cfg_type, o.name)
            return sb
        return QLineEdit()  # str, and the tuples (formats, crop corners) as their text

    def set_config(self, cfg: Any) -> None:
        """Show the values of stage config `cfg`."""
        plain = config_to_dict(cfg)
        for name, w in self.widgets.items():
            v = getattr(cfg, name)
            if isinstance(w, QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, QComboBox):
                w.setCurrentIndex(max(0, w.findData(v)))
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                w.setValue(v)
            else:
                p = plain[name]
                w.setText(",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in p)
                          if isinstance(p, list) else "" if p is None else str(p))

    def values(self) -> dict[str, Any]:
        """``{option: value}`` of every widget (text for the tuple options; update_config
        parses and checks them)."""
        out: dict[str, Any] = {}
        for name, w in self.widgets.items():
            if isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[name] = w.currentData()
            elif isinstance(w, QSpinBox | QDoubleSpinBox):
                out[name] = w.value()
            else:
                out[name] = w.text().strip()
        return out

    def config(self, base: Any) -> Any:
        """`base` with the form's values applied.

        Raises:
            ConfigError: a value outside its option's range (naming it).
        """
        return update_config(base, self.values())


class StageOptionsDialog(QDialog):
    """Every stage's options in one tab each; OK saves them to the project's ``project.json``
    (a changed option re-runs that stage and those after it, as ``--set`` does).

    Args:
        project: the :class:`~splatstudio.project.Project` to edit.
        stage: the tab to show first.
    """

    def __init__(self, project: Any, stage: str = STAGES[0], parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.error: str | None = None
        self.setWindowTitle("Stage options")
        self.setMinimumSize(640, 560)
        self.tabs = QTabWidget()
        self.forms: dict[str, StageOptionsForm] = {}
        for s in STAGES:
            form = StageOptionsForm(s, project.config.stage(s))
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(form)
            self.forms[s] = form
            self.tabs.addTab(scroll, s)
        self.tabs.setCurrentIndex(STAGES.index(stage))
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        note = QLabel("Saved in project.json. A changed option re-runs its stage and every "
                      "stage after it; options marked as such in their tooltip do not.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(note)
        lay.addWidget(self.error_label)
        lay.addWidget(buttons)

    def save(self) -> bool:
        """Check every form and save the project; False (and the message shown) when an
        option is out of its range."""
        try:
            configs = {s: f.config(self.project.config.stage(s)) for s, f in self.forms.items()}
        except ConfigError as e:
            self.error = str(e)
            self.error_label.setText(self.error)
            self.error_label.show()
            return False
        for s, cfg in configs.items():
            setattr(self.project.config, s, cfg)
        self.project.save()
        self.accept()
        return True
