"""What every stage writes, where, and how to read it: the stages' declared outputs.

Each stage writes only its own folder (``exports/`` for export, or ``ExportConfig.output_dir``).
A consumer (a later stage, the CLI, the GUI, a test) never spells another stage's path: it takes
the :class:`Output` declared here, or one of the typed readers below, which say what is missing
and which stage to run. README's "The project folder" lists the same paths, one line each
(``tests/unit/test_artifacts.py`` checks it against :data:`OUTPUTS`).

Importing this module imports nothing heavy: pycolmap is loaded by :meth:`Model.reconstruction`
only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..geo.enu import GeoOrigin
from ..project import read_json, write_json_atomic

if TYPE_CHECKING:
    from ..render.camera import PinholeCamera


@dataclass(frozen=True)
class Output:
    """One declared output of a stage.

    Attributes:
        stage: the stage that writes it (``train/pause`` and ``train/preview_camera.json`` are
            written by the user or the GUI for the train stage to read: stage ``train``;
            ``viewer``: saved by the viewer's workbench, read by the export stage).
        rel: its path relative to the project folder (POSIX; ``<id>``-style parts name a
            pattern, see :attr:`pattern`).
        what: one line on its content, as the README says it.
    """

    stage: str
    rel: str
    what: str

    @property
    def pattern(self) -> bool:
        """The path is a pattern (``reproject/views/<id>/NN.jpg``), not one file."""
        return "<" in self.rel or "NN" in self.rel

    def path(self, root: str | Path) -> Path:
        """The output's path in project folder `root`."""
        if self.pattern:
            raise ValueError(f"{self.rel} names many files; use its folder")
        return Path(root) / self.rel


# -- ingest ------------------------------------------------------------------------------------
MANIFEST = Output("ingest", "ingest/manifest.json",
                  "per image: id, file, size, kind, GPS, ENU, time, focal; origin; skipped")
# -- reproject ---------------------------------------------------------------------------------
RIG = Output("reproject", "reproject/rig.json",
             "per view: name, yaw/pitch, PINHOLE intrinsics, cam_from_rig, masks")
MASKS = Output("reproject", "reproject/masks", "per view NN: ownership, nadir and keep masks")
PLATFORM_MASK = Output("reproject", "reproject/platform_mask.png",
                       "equirect 512 x 256, 0 on the platform")
VIEWS = Output("reproject", "reproject/views", "views/<id>/NN.jpg: the perspective views")
PHOTOS = Output("reproject", "reproject/photos", "perspective photos, unchanged")
FRAMES = Output("reproject", "reproject/frames.json",
                "per frame (panorama or photo): images, camera, GPS, ENU, time; origin; rig")
SFM_RIG = Output("reproject", "reproject/sfm_rig.json",
                 "with reproject.sfm_rig: SfM's own rig (views s00, s01 ...), as rig.json")
SFM_VIEWS = Output("reproject", "reproject/sfm_views",
                   "sfm_views/<id>/sNN.jpg: SfM's own views (with reproject.sfm_rig)")
# -- sfm ---------------------------------------------------------------------------------------
SFM_IMAGES = Output("sfm", "sfm/images", "links to the views and photos, by COLMAP image name")
SFM_MASKS = Output("sfm", "sfm/masks", "SIFT masks by COLMAP image name")
SFM_DATABASE = Output("sfm", "sfm/database.db", "COLMAP database: features, matches")
SFM_STATE = Output("sfm", "sfm/state.json", "what the features and matches were made with")
SFM_PAIRS = Output("sfm", "sfm/pairs.txt", "the image pairs matched")
SFM_REPORT = Output("sfm", "sfm/sfm.json", "mapper, registered images, points, timings")
SFM_MODEL = Output("sfm", "sfm/sparse", "COLMAP binary model in the SfM frame")
SFM_RIG_MODEL = Output("sfm", "sfm/sparse_sfm_rig",
                       "with reproject.sfm_rig: the model on SfM's own views, as mapped")
SFM_FARM = Output("sfm", "sfm/farm", "with a farm: sift.items.json, matching.items.json (per "
                  "item: state, peer, seconds, bytes, SHA-256 of each output)")
# -- georef ------------------------------------------------------------------------------------
GEOREF_MODEL = Output("georef", "georef/sparse", "COLMAP binary model in ENU metres")
GEOREF_TEXT = Output("georef", "georef/sparse_text", "the same model as COLMAP text")
GEOREF_TRANSFORMS = Output("georef", "georef/transforms.json", "nerfstudio transforms.json")
GEOREF_REPORT = Output("georef", "georef/georef.json",
                       "transform, per-frame residuals, GPS check verdict")
# -- train -------------------------------------------------------------------------------------
TRAIN_SPLAT = Output("train", "train/splat.ply", "the trained splat (INRIA PLY, ENU metres)")
TRAIN_METRICS = Output("train", "train/metrics.json", "held-out evaluations, final metrics")
TRAIN_CURVE = Output("train", "train/curve.jsonl",
                     "one JSON line every metrics_every steps: loss, gaussians, steps/s, memory")
TRAIN_PREVIEW = Output("train", "train/preview.png", "the latest preview render")
TRAIN_CHECKPOINTS = Output("train", "train/checkpoints", "the latest two checkpoints")
TRAIN_PREVIEW_CAMERA = Output("train", "train/preview_camera.json",
                              "written by the GUI: the camera of the next preview")
TRAIN_BLOCKS = Output("train", "train/blocks", "with train.blocks > 1: plan.json and each "
                      "block's session folder bNN/ (checkpoints, metrics, splat.ply)")
TRAIN_PAUSE = Output("train", "train/pause", "created by the user or the GUI: pause training")
# -- export ------------------------------------------------------------------------------------
EXPORT_DIR = Output("export", "exports", "the export stage's default folder")
EXPORT_MANIFEST = Output("export", "exports/manifest.json",
                         "the files written, their sizes, formats and checks")
# written by the viewer's workbench (pipeline/versions.py) for the export stage (export.source)
EDITS = Output("viewer", "edits/vNNN.ply", "edited versions saved from the viewer")
EDITS_INDEX = Output("viewer", "edits/versions.json",
                     "the edited versions: name, file, source, gaussians")

OUTPUTS: tuple[Output, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Output))
"""Every declared output, in stage order."""

MODEL_FILES = ("images.bin", "images.txt")
"""A COLMAP model folder holds a model when it has one of these (binary or text)."""

EXPORT_MANIFEST_NAME = Path(EXPORT_MANIFEST.rel).name
"""The export manifest's name inside the export folder (wherever ``output_dir`` puts it)."""


def outputs(stage: str) -> tuple[Output, ...]:
    """The declared outputs of `stage`."""
    return tuple(o for o in OUTPUTS if o.stage == stage)


def export_dir(root: str | Path, output_dir: str = "") -> Path:
    """The export stage's folder: `output_dir` (``ExportConfig.output_dir``, ``~`` expanded)
    or the project's ``exports/``."""
    return Path(output_dir).expanduser() if output_dir else Path(root) / EXPORT_DIR.rel


# -- typed readers -----------------------------------------------------------------------------
@dataclass
class Manifest:
    """``ingest/manifest.json``.

    Attributes:
        path: the file.
        data: the whole JSON object (README "The project folder" lists its keys).
    """

    path: Path
    data: dict[str, Any]

    @property
    def images(self) -> list[dict[str, Any]]:
        """Per image: id, file (relative to `input_dir`), width, height, kind, gps, enu_m ..."""
        return list(self.data.get("images") or [])

    @property
    def input_dir(self) -> Path:
        """The folder the images were read from."""
        return Path(self.data.get("input_dir", ""))

    @property
    def origin(self) -> GeoOrigin | None:
        """The ENU origin (WGS84 degrees, metres), None when the input had no GPS.

        Raises:
            InputError: a malformed origin (names the file).
        """
        o = self.data.get("origin")
        if o is None:
            return None
        try:
            return GeoOrigin(float(o["lat_deg"]), float(o["lon_deg"]), float(o["h_m"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(self.path, f"malformed origin ({e})") from None


def read_manifest(root: str | Path) -> Manifest:
    """The ingest manifest of project folder `root`.

    Raises:
        InputError: ingest has not run (no manifest).
        ProjectError: the file is not valid JSON (names it).
    """
    p = MANIFEST.path(root)
    if not p.exists():
        raise InputError(p, "no manifest: run the ingest stage first")
    return Manifest(p, read_json(p))


@dataclass
class Frames:
    """``reproject/frames.json`` and the rig it names.

    Attributes:
        path: the file.
        frames: per frame (a panorama or a photo): id, kind, images, camera, GPS, ENU, time.
        origin: the ENU origin as the manifest holds it (a dict of lat_deg, lon_deg, h_m) or
            None.
        rig: ``reproject/rig.json`` (per view: name, yaw, pitch, camera, cam_from_rig, masks),
            None when there are no panoramas.
        sfm_rig: ``reproject/sfm_rig.json``, SfM's own rig (same form, views ``s00`` ...;
            each panorama frame then lists its views in ``sfm_images``), None when SfM runs
            on the training views.
    """

    path: Path
    frames: list[dict[str, Any]]
    origin: dict[str, float] | None
    rig: dict[str, Any] | None
    sfm_rig: dict[str, Any] | None = None


def read_frames(root: str | Path) -> Frames:
    """The frames and rig the reproject stage wrote in project folder `root`.

    Raises:
        InputError: reproject has not run, left no frames, or its rig is missing.
    """
    fj = FRAMES.path(root)
    if not fj.exists():
        raise InputError(fj, "missing; run the reproject stage first")
    data = read_json(fj)
    frames = data.get("frames") or []
    if not frames:
        raise InputError(fj, "no frames: the input folder gave no usable images")
    rig = None
    if any(f["kind"] == "equirect" for f in frames):
        rj = fj.parent / (data.get("rig") or Path(RIG.rel).name)
        if not rj.exists():
            raise InputError(rj, "missing; run the reproject stage again")
        rig = read_json(rj)
    sfm_rig = None
    if rig is not None and data.get("sfm_rig"):
        sj = fj.parent / data["sfm_rig"]
        if not sj.exists():
            raise InputError(sj, "missing; run the reproject stage again")
        sfm_rig = read_json(sj)
    return Frames(fj, frames, data.get("origin"), rig, sfm_rig)


@dataclass(frozen=True)
class Model:
    """A COLMAP model folder a stage wrote (``sfm/sparse``, ``georef/sparse``): binary or text.

    Attributes:
        path: the folder.
        stage: the stage that writes it (named in the error when it is missing).
        what: "SfM model" or "georeferenced model".
    """

    path: Path
    stage: str
    what: str

    def exists(self) -> bool:
        """The folder holds a model (``images.bin`` or ``images.txt``)."""
        return any((self.path / f).exists() for f in MODEL_FILES)

    def require(self) -> Model:
        """This model, checked.

        Raises:
            InputError: no model there yet (names the folder and the stage to run).
        """
        if not self.exists():
            raise InputError(self.path, f"no {self.what}; run the {self.stage} stage first")
        return self

    def reconstruction(self) -> Any:
        """The ``pycolmap.Reconstruction`` (imports pycolmap).

        Raises:
            InputError: no model there yet.
        """
        import pycolmap

        return pycolmap.Reconstruction(str(self.require().path))

    def cameras(self) -> list[Any]:
        """The registered images as :class:`splatstudio.pipeline.train.RegisteredView`
        records (image, mask, :class:`~splatstudio.render.camera.PinholeCamera` in the model's
        frame), sorted by name.

        Raises:
            InputError: no model there yet.
            StageError: a camera model we cannot use.
        """
        from .train import load_cameras

        return load_cameras(self.reconstruction())


def sfm_model(root: str | Path) -> Model:
    """The SfM stage's model (SfM frame) in project folder `root`."""
    return Model(SFM_MODEL.path(root), "sfm", "SfM model")


def georef_model(root: str | Path) -> Model:
    """The georeferenced model (ENU metres, the frame of ``train/splat.ply``) in project
    folder `root`."""
    return Model(GEOREF_MODEL.path(root), "georef", "georeferenced model")


def trained_splat(root: str | Path) -> Path:
    """``train/splat.ply`` of project folder `root`, checked.

    Raises:
        InputError: no trained splat yet.
    """
    p = TRAIN_SPLAT.path(root)
    if not p.is_file():
        raise InputError(p, "no trained splat; run the train stage first")
    return p


def read_curve(path: Path, max_step: int | None = None) -> list[dict[str, float]]:
    """The points of a ``curve.jsonl`` (:data:`TRAIN_CURVE`; dicts with at least ``step``), in
    step order.

    A line that does not parse (a kill in the middle of a write) is skipped; a step written
    twice (a resume that replayed it) keeps its last value. Points after `max_step` are left
    out. A missing file gives [].
    """
    points: dict[int, dict[str, float]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            point = json.loads(line)
            step = int(point["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if max_step is None or step <= max_step:
            points[step] = point
    return [points[k] for k in sorted(points)]


def read_evals(root: str | Path) -> list[dict[str, Any]]:
    """The held-out evaluations of ``train/metrics.json`` (``evals``: step, psnr, ssim,
    gaussians ...), by step; [] when there are none or the file cannot be read."""
    try:
        evals = read_json(TRAIN_METRICS.path(root)).get("evals", [])
        return sorted(evals, key=lambda e: int(e["step"]))
    except Exception:  # noqa: BLE001 - OSError, ProjectError, a malformed entry
        return []


def read_preview_camera(train_dir: Path) -> PinholeCamera | None:
    """The camera of ``train_dir/preview_camera.json``
    (:meth:`~splatstudio.render.camera.PinholeCamera.to_dict`'s object: ``viewmat`` 4x4
    world-to-camera OpenCV, world = ENU metres; ``K`` 3x3 pixels; ``width``, ``height``), or
    None when the file is absent or not a valid camera (shapes, positive size, finite
    numbers)."""
    from ..render.camera import PinholeCamera  # numpy only; keeps torch out of this import

    p = Path(train_dir) / Path(TRAIN_PREVIEW_CAMERA.rel).name
    if not p.exists():
        return None
    try:
        return PinholeCamera.from_dict(json.loads(p.read_text()))
    except (ValueError, TypeError, AttributeError, OSError):  # JSON, shape, size, not a dict
        return None


def write_preview_camera(train_dir: Path, camera: PinholeCamera) -> Path:
    """Write `camera` to ``train_dir/preview_camera.json`` atomically
    (:meth:`~splatstudio.render.camera.PinholeCamera.to_dict`); returns the path."""
    path = Path(train_dir) / Path(TRAIN_PREVIEW_CAMERA.rel).name
    write_json_atomic(path, camera.to_dict())
    return path
