"""The Export dialog: formats and their options, a destination folder, the export stage's progress,
and the files it wrote.

The dialog edits :class:`~splatstudio.config.ExportConfig` and nothing else: :meth:`overrides`
turns its widgets into ``{field: value}``, which :meth:`start` validates (the stage's own checks:
formats, crop box, ranges), stores in ``project.json`` (the worker reads its options there, as
``splatstudio export --set ...`` would) and runs the export stage through the model's runner
(forced, so it runs even when up to date). When the stage ends the dialog lists the manifest's
files with their sizes and offers to open the folder; a failure shows the stage's message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..config import ExportConfig, ExportFormat, option, update_config
from ..errors import ConfigError, SplatStudioError
from ..pipeline.artifacts import EXPORT_MANIFEST_NAME
from ..project import read_json
from ..splats.formats import REGISTRY as SPLAT_REGISTRY
from ..status import StageState
from .model import ProjectModel
from .options_form import configure_spin, option_tooltip

#: Labels of the formats (names as ``ExportConfig.formats`` spells them): the splat formats'
#: from their registry (:data:`splatstudio.splats.formats.REGISTRY`); the list shown is the
#: export stage's own (:data:`splatstudio.pipeline.export.ALL_FORMATS`), a format without a
#: label here is shown by its name.
FORMAT_LABELS: dict[str, str] = {
    **{f.name: f.label for f in SPLAT_REGISTRY.values()},
    "3dtiles": "3D Tiles: CesiumJS, on the globe (GPS)",
    "glb": "GLB: textured mesh (glTF)",
    "obj": "OBJ: textured mesh, .mtl, .png",
}
SPZ_VERSION_LABELS = {4: "version 4 (current)", 3: "version 3 (older viewers)"}
TEXTURE_SIZES = (512, 1024, 2048, 4096, 8192)
BUSY_TEXT = "Stages are running; export when they are done."


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024, one decimal above bytes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _corner(corner: tuple[float, float, float] | None) -> list[float] | None:
    """A crop corner of the saved config as a list, or None."""
    return None if corner is None else list(corner)


def manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(file name, what it is, bytes) of every file an export manifest lists: each exported
    file, the extra files of a mesh (.mtl, texture) and each ``.geo.json`` sidecar."""
    rows: list[tuple[str, str, int]] = []
    out = Path(manifest.get("output_dir", "."))
    for e in manifest.get("files", []):
        what = e.get("format", "")
        if "gaussians" in e:
            what += f", {int(e['gaussians']):,} gaussians"
        elif "faces" in e:
            what += f", {int(e['faces']):,} faces"
        rows.append((e["path"], what, int(e.get("bytes", 0))))
        for extra in e.get("files", []) or []:
            rows.append((extra["path"], f"{e.get('format', '')} part", int(extra.get("bytes", 0))))
        side = e.get("sidecar")
        if side:
            p = out / side
            rows.append((side, "georeferencing sidecar", p.stat().st_size if p.exists() else 0))
    return rows


def source_combo(project_root: Path | None, current: str = "") -> QComboBox:
    """The splat to export (``ExportConfig.source``): the trained one (data ``""``) or an
    edited version saved from the viewer (data: its name), `current` selected."""
    from ..pipeline.versions import list_versions

    box = QComboBox()
    box.addItem("Trained splat (train/splat.ply)", "")
    try:
        versions = list_versions(project_root) if project_root is not None else []
    except SplatStudioError:
        versions = []
    for v in versions:
        box.addItem(f"Edited {v['name']}: {v.get('gaussians', 0):,} gaussians "
                    f"({v.get('removed', 0):,} removed)", v["name"])
    if current and box.findData(current) < 0:  # a version that is gone: shown, the stage says
        box.addItem(f"{current} (missing)", current)
    box.setCurrentIndex(max(0, box.findData(current)))
    box.setToolTip("The trained splat, or a version edited in the Viewer (Save version)")
    return box


class ExportDialog(QDialog):
    """Choose formats and options, export, see the written files.

    Args:
        model: the project model (the export runs through its runner thread).
        grace_s: cancel grace period of the run, seconds.

    Signals:
        exportFinished(object): the manifest (dict) after a successful export, or None after
            a failure (the message is in :attr:`error`).
    """

    exportFinished = Signal(object)

    def __init__(self, model: ProjectModel, parent: QWidget | None = None, *,
                 grace_s: float = 10.0):
        super().__init__(parent)
        self.model = model
        self.grace_s = grace_s
        self.error: str | None = None
        self.manifest: dict[str, Any] | None = None
        self._running = False
        self.setWindowTitle("Export")
        self.setMinimumWidth(720)
        project = model.project
        cfg = project.config.export if project is not None else ExportConfig()
        from ..pipeline.export import ALL_FORMATS, MESH_FORMATS, parse_formats

        self.mesh_formats = tuple(MESH_FORMATS)
        try:
            chosen = set(parse_formats(cfg.formats))
        except ConfigError:  # a hand-edited project.json: start with nothing ticked
            chosen = set()

        # formats: splat files on the left, meshes on the right
        self.format_boxes: dict[str, QCheckBox] = {}
        fbox = QGroupBox("Formats")
        fgrid = QGridLayout(fbox)
        self.spz_version = QComboBox()
        spz = option(ExportConfig, "spz_version")
        for v in spz.choices or ():
            self.spz_version.addItem(SPZ_VERSION_LABELS.get(v, f"version {v}"), v)
        self.spz_version.setCurrentIndex(max(0, self.spz_version.findData(cfg.spz_version)))
        self.spz_version.setToolTip(option_tooltip(spz))
        self.glb_spz = QCheckBox("SPZ compressed")
        self.glb_spz.setChecked(cfg.glb_splat_spz)
        self.glb_spz.setToolTip("KHR_gaussian_splatting_compression_spz_2: an SPZ v3 payload "
                                "(about 5x smaller, quantised; what CesiumJS reads)")
        self.tiles_sh = QSpinBox()
        configure_spin(self.tiles_sh, ExportConfig, "tiles_sh_degree")
        self.tiles_sh.setValue(cfg.tiles_sh_degree)
        self.tiles_sh.setPrefix("SH degree ")
        self.tiles_sh.setToolTip("Spherical-harmonics degree of the 3D Tiles (lower: smaller "
                                 "tiles, faster in the browser)")
        self.has_origin = True
        if project is not None:
            from ..pipeline.export import read_origin

            try:
                self.has_origin = read_origin(project) is not None
            except SplatStudioError:
                self.has_origin = False
        rows = {"splat": 0, "mesh": 0}
        for fmt in ALL_FORMATS:
            cb = QCheckBox(FORMAT_LABELS.get(fmt, fmt))
            cb.setChecked(fmt in chosen)
            cb.toggled.connect(self._update_enabled)
            self.format_boxes[fmt] = cb
            kind = "mesh" if fmt in self.mesh_formats else "splat"
            fgrid.addWidget(cb, rows[kind], 0 if kind == "splat" else 2)
            if fmt == "spz":
                fgrid.addWidget(self.spz_version, rows[kind], 1)
            elif fmt == "glb_splat":
                fgrid.addWidget(self.glb_spz, rows[kind], 1)
            elif fmt == "3dtiles":
                fgrid.addWidget(self.tiles_sh, rows[kind], 1)
                if not self.has_origin:
                    cb.setChecked(False)
                    cb.setEnabled(False)
                    cb.setToolTip("Needs a georeferenced project: this capture has no GPS")
            rows[kind] += 1
        fgrid.setColumnStretch(1, 1)
        fgrid.setColumnMinimumWidth(1, 150)
        self.name = QLineEdit(cfg.name)
        self.name.setToolTip("Base name of the files: scene.ply, scene.spz ...")
        self.axes = QComboBox()
        self.axes.addItem("Splat viewers: x east, y down, z north (upright in SuperSplat, "
                          "PlayCanvas)", "viewer")
        self.axes.addItem("ENU: x east, y north, z up (GIS; SPZ in its spec's RUB)", "enu")
        self.axes.setCurrentIndex(max(0, self.axes.findData(cfg.axes)))
        self.axes.setToolTip("Axes of the .ply, .splat, .spz, .compressed.ply and .sog files "
                             "(each sidecar states them); the glTF, 3D Tiles and mesh files "
                             "always use their standards' axes")

        # filters
        gbox = QGroupBox("Filters (every format, the mesh included)")
        gform = QFormLayout(gbox)
        self.crop = QCheckBox("Crop to a box (ENU metres: x east, y north, z up)")
        lo, hi = _corner(cfg.crop_min), _corner(cfg.crop_max)
        self.crop.setChecked(lo is not None or hi is not None)
        self.crop.toggled.connect(self._update_enabled)
        self.crop_min = [self._coord(v) for v in (lo or [-50.0, -50.0, -20.0])]
        self.crop_max = [self._coord(v) for v in (hi or [50.0, 50.0, 30.0])]
        crop_grid = QGridLayout()
        for j, axis in enumerate(("x", "y", "z")):
            crop_grid.addWidget(QLabel(axis), 0, j + 1, Qt.AlignmentFlag.AlignCenter)
        crop_grid.addWidget(QLabel("min"), 1, 0)
        crop_grid.addWidget(QLabel("max"), 2, 0)
        for j in range(3):
            crop_grid.addWidget(self.crop_min[j], 1, j + 1)
            crop_grid.addWidget(self.crop_max[j], 2, j + 1)
        self.min_opacity = QDoubleSpinBox()
        self.min_opacity.setSingleStep(0.01)
        self.min_opacity.setDecimals(3)
        configure_spin(self.min_opacity, ExportConfig, "min_opacity")
        self.min_opacity.setValue(cfg.min_opacity)
        self.remove_floaters = QCheckBox("Remove floaters (isolated gaussians)")
        self.remove_floaters.setChecked(cfg.remove_floaters)
        self.remove_floaters.toggled.connect(self._update_enabled)
        self.floater_k = QSpinBox()
        self.floater_k.setRange(1, 256)
        self.floater_k.setValue(cfg.floater_k)
        self.floater_k.setToolTip("Neighbours per gaussian")
        self.floater_std = QDoubleSpinBox()
        self.floater_std.setRange(0.1, 20.0)
        self.floater_std.setSingleStep(0.5)
        self.floater_std.setValue(cfg.floater_std_ratio)
        self.floater_std.setToolTip("Threshold in standard deviations of the mean distance")
        floaters = QHBoxLayout()
        floaters.addWidget(self.remove_floaters)
        floaters.addWidget(QLabel("k"))
        floaters.addWidget(self.floater_k)
        floaters.addWidget(QLabel("std ratio"))
        floaters.addWidget(self.floater_std)
        floaters.addStretch(1)
        self.max_sh = QSpinBox()
        configure_spin(self.max_sh, ExportConfig, "max_sh_degree")
        self.max_sh.setValue(cfg.max_sh_degree)
        gform.addRow(self.crop)
        gform.addRow("", crop_grid)
        gform.addRow("Minimum opacity", self.min_opacity)
        gform.addRow(floaters)
        gform.addRow("Max SH degree", self.max_sh)

        # mesh and converter
        mbox = QGroupBox("Textured mesh (GLB, OBJ) and external converter")
        mform = QFormLayout(mbox)
        self.mesh_faces = QSpinBox()
        configure_spin(self.mesh_faces, ExportConfig, "mesh_faces", ui_max=50_000_000)
        self.mesh_faces.setSingleStep(50_000)
        self.mesh_faces.setGroupSeparatorShown(True)
        self.mesh_faces.setValue(cfg.mesh_faces)
        self.texture_size = QComboBox()
        self.texture_size.setToolTip(option_tooltip(option(ExportConfig, "texture_size")))
        for s in TEXTURE_SIZES:
            self.texture_size.addItem(f"{s} × {s}", s)
        if self.texture_size.findData(cfg.texture_size) < 0:
            self.texture_size.addItem(f"{cfg.texture_size} × {cfg.texture_size}", cfg.texture_size)
        self.texture_size.setCurrentIndex(self.texture_size.findData(cfg.texture_size))
        self.converter = QLineEdit(cfg.converter)
        self.converter.setPlaceholderText("optional, e.g.  kexconv {obj} {out}   (no shell)")
        self.converter.setToolTip(
            "Run after the export: {obj} {glb} {ply} {spz} {splat} {compressed_ply} are the "
            "files of this run, {out} the folder, {name} the base name"
        )
        mform.addRow("Mesh faces", self.mesh_faces)
        mform.addRow("Texture size", self.texture_size)
        mform.addRow("Converter command", self.converter)

        # destination
        self.dest = QLineEdit(str(self.default_dir()) if not cfg.output_dir else cfg.output_dir)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        dest_row = QHBoxLayout()
        dest_row.addWidget(self.dest, 1)
        dest_row.addWidget(browse)
        top = QFormLayout()
        self.source = source_combo(project.root if project is not None else None, cfg.source)
        top.addRow("Splat", self.source)
        top.addRow("Destination", dest_row)
        top.addRow("File name", self.name)
        top.addRow("Splat file axes", self.axes)

        # progress and results
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.message = QLabel()
        self.message.setObjectName("muted")
        self.message.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.files = QTreeWidget()
        self.files.setHeaderLabels(["File", "Contents", "Size"])
        self.files.setRootIsDecorated(False)
        self.files.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.files.setMinimumHeight(150)
        self.files.hide()
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("primary")
        self.export_button.setDefault(True)
        self.open_button = QPushButton("Open folder")
        self.open_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.export_button)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(fbox)
        lay.addWidget(gbox)
        lay.addWidget(mbox)
        lay.addWidget(self.progress)
        lay.addWidget(self.message)
        lay.addWidget(self.error_label)
        lay.addWidget(self.files, 1)
        lay.addLayout(buttons)

        self.export_button.clicked.connect(self.start)
        self.open_button.clicked.connect(self.open_folder)
        self.close_button.clicked.connect(self.reject)
        model.stageChanged.connect(self._on_stage)
        model.runFinished.connect(self._on_finished)
        model.runningChanged.connect(self._on_running)
        self._on_running(model.is_running)

    @staticmethod
    def _coord(value: float) -> QDoubleSpinBox:
        sb = QDoubleSpinBox()
        sb.setRange(-1e6, 1e6)
        sb.setDecimals(2)
        sb.setSuffix(" m")
        sb.setValue(value)
        return sb

    # -- options --------------------------------------------------------------------------
    def default_dir(self) -> Path:
        """The project's ``exports/`` folder (where the export stage writes by default)."""
        return self.model.stage_dir("export") or Path("exports")

    def output_dir(self) -> Path:
        """The folder the files go to (the destination field, or the default)."""
        text = self.dest.text().strip()
        return Path(text).expanduser() if text else self.default_dir()

    def formats(self) -> list[str]:
        """The checked formats, in the order shown."""
        return [f for f, cb in self.format_boxes.items() if cb.isChecked()]

    def overrides(self) -> dict[str, Any]:
        """The :class:`ExportConfig` fields the widgets set, ``{field: value}``.

        The formats are :class:`ExportFormat` members, the crop box ``(x, y, z)`` tuples (None
        when cropping is off), ``output_dir`` is
        empty when the destination is the project's ``exports/`` folder (so the project stays
        movable). Mesh, floater and converter fields are always included.
        """
        crop = self.crop.isChecked()
        out = self.output_dir()
        default = self.default_dir()
        same = out.resolve() == default.resolve() if out.is_absolute() else out == default

        def corner(boxes: list[QDoubleSpinBox]) -> tuple[float, float, float] | None:
            x, y, z = (b.value() for b in boxes)
            return (x, y, z) if crop else None

        return {
            "formats": tuple(ExportFormat(f) for f in self.formats()),
            "output_dir": "" if same else str(out),
            "name": self.name.text().strip() or "scene",
            "axes": str(self.axes.currentData()),
            "source": str(self.source.currentData() or ""),
            "spz_version": int(self.spz_version.currentData()),
            "glb_splat_spz": self.glb_spz.isChecked(),
            "tiles_sh_degree": self.tiles_sh.value(),
            "crop_min": corner(self.crop_min),
            "crop_max": corner(self.crop_max),
            "min_opacity": round(self.min_opacity.value(), 6),
            "remove_floaters": self.remove_floaters.isChecked(),
            "floater_k": self.floater_k.value(),
            "floater_std_ratio": self.floater_std.value(),
            "max_sh_degree": self.max_sh.value(),
            "mesh_faces": self.mesh_faces.value(),
            "texture_size": int(self.texture_size.currentData()),
            "converter": self.converter.text().strip(),
        }

    def config(self) -> ExportConfig:
        """The project's export config with :meth:`overrides` applied, checked as the stage
        checks it.

        Raises:
            ConfigError: an option the stage would refuse (message for the user).
        """
        from ..pipeline.export import filter_options, parse_formats

        base = self.model.project.config.export if self.model.project else ExportConfig()
        cfg = update_config(base, self.overrides())
        parse_formats(cfg.formats)
        filter_options(cfg)
        return cfg

    def _on_running(self, running: bool) -> None:
        if running and not self._running:
            self.message.setText(BUSY_TEXT)
        elif not running and self.message.text() == BUSY_TEXT:
            self.message.setText("")
        self._update_enabled()

    def _update_enabled(self) -> None:
        mesh = any(self.format_boxes[f].isChecked() for f in self.mesh_formats)
        self.mesh_faces.setEnabled(mesh)
        self.texture_size.setEnabled(mesh)
        self.spz_version.setEnabled("spz" in self.format_boxes
                                    and self.format_boxes["spz"].isChecked())
        self.glb_spz.setEnabled(self.format_boxes["glb_splat"].isChecked())
        self.tiles_sh.setEnabled(self.format_boxes["3dtiles"].isChecked())
        for b in self.crop_min + self.crop_max:
            b.setEnabled(self.crop.isChecked())
        self.floater_k.setEnabled(self.remove_floaters.isChecked())
        self.floater_std.setEnabled(self.remove_floaters.isChecked())
        busy = self.model.is_running
        self.export_button.setEnabled(
            self.model.project is not None and not busy and bool(self.formats())
        )

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export to folder", str(self.output_dir()))
        if d:
            self.dest.setText(d)

    # -- running --------------------------------------------------------------------------
    def start(self) -> bool:
        """Validate, save the options in ``project.json`` and run the export stage.
        Returns False (and shows why) when it cannot start."""
        p = self.model.project
        if p is None or self.model.is_running:
            self._fail(BUSY_TEXT if p else "No project open.")
            return False
        try:
            cfg = self.config()
            p.config.export = cfg
            p.save()
        except (SplatStudioError, OSError, ValueError) as e:
            self._fail(str(e))
            return False
        self.error, self.manifest = None, None
        self.error_label.hide()
        self.files.clear()
        self.files.hide()
        self.open_button.setEnabled(False)
        self.progress.setValue(0)
        self.message.setText("Starting the export…")
        self._running = True
        self.model.run(["export"], force=True, device=str(p.config.device), grace_s=self.grace_s)
        self._update_enabled()
        return True

    def _fail(self, message: str) -> None:
        self.error = message
        self.error_label.setText(message.strip())
        self.error_label.show()
        self.message.setText("")

    def _on_stage(self, stage: str) -> None:
        if not self._running or stage != "export":
            return
        info = self.model.stages[stage]
        if stage == "export" and info.state == StageState.RUNNING:
            self.progress.setValue(int(round(info.fraction * 1000)))
            self.message.setText(info.message or "exporting…")

    def _on_finished(self, result: Any) -> None:
        if not self._running:
            return
        self._running = False
        info = self.model.stages["export"]
        state = None if result is None else result.states.get("export")
        if state == StageState.DONE:
            self.progress.setValue(1000)
            self._show_manifest()
        else:
            msg = info.error or (result.reason if result is not None else None)
            self._fail(msg or "the export did not run (the runner could not start)")
            self.progress.setValue(0)
            self.exportFinished.emit(None)
        self._update_enabled()

    def _show_manifest(self) -> None:
        path = self.output_dir() / EXPORT_MANIFEST_NAME
        try:
            manifest = read_json(path)
        except (OSError, ValueError, SplatStudioError) as e:
            self._fail(f"{path}: cannot read the export manifest ({e})")
            self.exportFinished.emit(None)
            return
        self.manifest = manifest
        self.files.clear()
        total = 0
        for name, what, size in manifest_rows(manifest):
            item = QTreeWidgetItem([name, what, format_bytes(size)])
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(0, str(self.output_dir() / name))
            self.files.addTopLevelItem(item)
            total += size
        self.files.show()
        self.files.resizeColumnToContents(1)
        self.message.setText(
            f"Wrote {self.files.topLevelItemCount()} files ({format_bytes(total)}) to "
            f"{self.output_dir()}"
        )
        self.open_button.setEnabled(True)
        self.exportFinished.emit(manifest)

    def open_folder(self) -> bool:
        """Open the destination folder in the system's file manager."""
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.output_dir())))

    def reject(self) -> None:
        """Close the dialog (Close, Esc); an export still running is cancelled."""
        if self._running:
            self.model.cancel()
        super().reject()
