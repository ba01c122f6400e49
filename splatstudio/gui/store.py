"""Application preferences and the recent-project list, persisted with QSettings."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QStandardPaths, Signal

from ..config import PRESETS, Device

MAX_RECENT = 20


class AppSettings(QObject):
    """Typed access to the app's QSettings.

    Args:
        settings: the QSettings to use (tests pass an INI file in a temporary folder);
            default the user's "SplatStudio/SplatStudio" settings.

    Signals:
        recentChanged: the recent-project list changed.
        changed: any preference (device, preset, projects folder, grace) changed.
    """

    recentChanged = Signal()
    changed = Signal()

    def __init__(self, settings: QSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.qsettings = settings or QSettings("SplatStudio", "SplatStudio")

    # -- recent projects ------------------------------------------------------------------
    def recent(self) -> list[Path]:
        """Recent project folders, most recent first (they may no longer exist)."""
        raw = self.qsettings.value("recent_projects", "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        except (json.JSONDecodeError, TypeError):
            items = []
        return [Path(p) for p in items if isinstance(p, str)]

    def _set_recent(self, paths: list[Path]) -> None:
        self.qsettings.setValue("recent_projects", json.dumps([str(p) for p in paths]))
        self.qsettings.sync()
        self.recentChanged.emit()

    def add_recent(self, root: Path) -> None:
        """Put project folder `root` first in the recent list."""
        root = Path(root).resolve()
        paths = [root] + [p for p in self.recent() if p != root]
        self._set_recent(paths[:MAX_RECENT])

    def remove_recent(self, root: Path) -> None:
        """Take `root` off the recent list (the folder itself is not touched)."""
        root = Path(root).resolve()
        self._set_recent([p for p in self.recent() if p != root])

    # -- preferences ----------------------------------------------------------------------
    def _get(self, key: str, default: str) -> str:
        v = self.qsettings.value(key, default)
        return str(v) if v is not None else default

    def _set(self, key: str, value: str) -> None:
        self.qsettings.setValue(key, value)
        self.qsettings.sync()
        self.changed.emit()

    @property
    def device(self) -> str:
        """Compute device for new runs: "auto", "cpu", "cuda" or "mps"."""
        v = self._get("device", Device.AUTO.value)
        return v if v in {d.value for d in Device} else Device.AUTO.value

    @device.setter
    def device(self, value: str) -> None:
        self._set("device", str(Device(value)))

    @property
    def preset(self) -> str:
        """Preset of new projects (a key of config.PRESETS)."""
        v = self._get("preset", "balanced")
        return v if v in PRESETS else "balanced"

    @preset.setter
    def preset(self, value: str) -> None:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}")
        self._set("preset", value)

    @property
    def projects_dir(self) -> Path:
        """Folder in which new projects are created (one sub-folder per project)."""
        docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
        default = str(Path(docs or Path.home()) / "SplatStudio Projects")
        return Path(self._get("projects_dir", default))

    @projects_dir.setter
    def projects_dir(self, value: Path) -> None:
        self._set("projects_dir", str(value))

    @property
    def grace_s(self) -> float:
        """Seconds a cancelled stage gets to stop before its processes are killed."""
        try:
            return float(self._get("grace_s", "10"))
        except ValueError:
            return 10.0

    @grace_s.setter
    def grace_s(self, value: float) -> None:
        self._set("grace_s", str(float(value)))
