"""Configuration: one keyword-only dataclass per stage, grouped in :class:`ProjectConfig`.

The same objects drive the CLI (options are generated from the fields), the GUI forms and
`project.json` (nerfstudio-style dataclass configs; gsplat `simple_trainer.py`-style presets).
Fields whose metadata says ``hash=False`` (worker counts, devices) do not invalidate a stage when
changed; every other field does, together with everything downstream.

Each option's metadata (:func:`opt`) holds its help text and, where it has one, its range
(``min``/``max`` inclusive, ``above``/``below`` exclusive) or its ``choices``; :func:`options`
lists them for the CLI and the GUI, and :func:`update_config` (every way a value gets in: the
CLI's options and ``--set``, the GUI, ``project.json``, presets) checks them with an error that
names the option and its range. :func:`apply_preset` is the one way a preset is applied.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from .errors import ConfigError

STAGES: tuple[str, ...] = ("ingest", "reproject", "sfm", "georef", "train", "export")
"""Pipeline stages, in order. Each reads only its predecessors' artifacts."""


def opt(default: Any, help: str, *, hash: bool = True, min: float | None = None,
        max: float | None = None, above: float | None = None, below: float | None = None,
        choices: tuple[Any, ...] | None = None, **kw: Any) -> Any:
    """A dataclass field with a help text (shown by the CLI and the GUI), a hash flag and
    optionally a range: ``min <= v <= max``, ``above < v < below``, or ``v in choices``
    (checked by :func:`update_config`). Other keywords (``added``, ``parse``, ``text``)
    go into the metadata as they are."""
    rng = {k: v for k, v in (("min", min), ("max", max), ("above", above), ("below", below),
                             ("choices", choices)) if v is not None}
    return field(default=default, metadata={"help": help, "hash": hash, **rng, **kw})


class ImageKind(enum.StrEnum):
    """How ingest treats an image: by aspect ratio (auto), or forced."""

    AUTO = "auto"
    EQUIRECT = "equirect"
    PERSPECTIVE = "perspective"


class RigLayout(enum.StrEnum):
    """Virtual camera rigs a panorama is cut into.

    - ``splatforge18``: 6 azimuths x 3 elevations (-35, 0, +35 deg), 18 views (Splat Forge).
    - ``colmap12``: COLMAP 4's overlapping panorama layout, 4 azimuths x (-35, 0, +35 deg) with
      the upper ring turned by 45 deg (``pycolmap.panorama``), 12 views.
    - ``cube6``: the 6 faces of a cube (90 deg field of view).
    - ``custom``: the ``views`` option, "yaw:pitch" pairs in degrees.
    """

    SPLATFORGE18 = "splatforge18"
    COLMAP12 = "colmap12"
    CUBE6 = "cube6"
    CUSTOM = "custom"


class SfmRig(enum.StrEnum):
    """The views structure-from-motion runs on, for panoramas (training keeps ``reproject.rig``).

    - ``training``: the training rig's views themselves (SIFT, matching and mapping on all of
      them, at their size).
    - ``cube6``: a smaller rig of its own, the 6 faces of a cube (90 deg, no overlap, so every
      pixel is owned: no SIFT work thrown away by the ownership masks), at
      ``reproject.sfm_size``. SfM gives the panoramas' poses; the training views get theirs
      from the panorama's pose and their ``cam_from_rig`` (``sfm.expand_to_rig``). Measured on
      the full-resolution walk: README "Structure from motion", ``benchmarks/results/sfm_cost.json``.
    - ``colmap12``: COLMAP 4's 12-view overlapping layout at ``reproject.sfm_size``.
    """

    TRAINING = "training"
    CUBE6 = "cube6"
    COLMAP12 = "colmap12"


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


@dataclass(kw_only=True)
class IngestConfig:
    """Options of the ingest stage (reads GPS and image headers, writes the manifest)."""

    recursive: bool = opt(True, "look for images in sub-folders too")
    kind: ImageKind = opt(ImageKind.AUTO, "treat images as equirect or perspective (auto: 2:1 is equirect)")
    equirect_tolerance: float = opt(
        0.01, "relative tolerance on the 2:1 aspect ratio of an equirectangular panorama"
    )
    gps_outlier_m: float = opt(
        1000.0, "a GPS fix farther than this (metres) and 20 times the capture's median spread "
        "from the capture's median position is ignored (another trip's photo)", added=True
    )


@dataclass(kw_only=True)
class ReprojectConfig:
    """Options of the reproject stage (equirect panorama -> perspective views of a virtual rig)."""

    rig: RigLayout = opt(RigLayout.SPLATFORGE18, "virtual camera rig layout")
    views: str = opt("", "custom rig: comma-separated yaw:pitch pairs in degrees, e.g. '0:0,90:0'")
    fov_deg: float = opt(90.0, "field of view of every view, degrees (horizontal = vertical)",
                         above=0.0, below=170.0)
    size: int = opt(0, "view width = height in pixels (0: what the panorama supports)")
    max_size: int = opt(1600, "cap on the automatic view size, pixels")
    nadir_mask: bool = opt(True, "mask the operator and mount around the nadir")
    nadir_deg: float = opt(45.0, "nadir mask radius, degrees from straight down")
    platform_mask: bool = opt(
        True, "find what stays fixed in the camera's frame across the capture (vehicle, cabin, "
        "mount) and ignore it in SfM and training", added=True)
    platform_mask_file: str = opt(
        "", "your own platform mask: an equirect image of any size, black where the platform "
        "is (replaces the automatic one)", added=True)
    sfm_rig: SfmRig = opt(
        SfmRig.TRAINING, "the views SfM runs on: the training views, or a smaller rig of its "
        "own (cube6: 6 views; the training views then get their poses from the panorama's)",
        added=True)
    sfm_size: int = opt(
        0, "view size of SfM's own rig, pixels (0: what the panorama supports, at most 1024; "
        "views shrunk below that are not upsampled by SIFT)", min=0, added=True)
    jpeg_quality: int = opt(95, "JPEG quality of the written views (1..100)")
    workers: int = opt(0, "worker processes (0: one per core)", hash=False)


class Mapper(enum.StrEnum):
    """Structure-from-motion mapper.

    - ``auto``: global (GLOMAP) for panoramas and photos alike. Measured on the real captures
      (README, benchmarks/results/sfm*.json): on the geovisio walk the global mapper gives
      nearly the same geometry run after run and agrees with COLMAP's own panorama pipeline
      (nearly even 1.9-2.9 m steps), while the incremental mapper's answer changes with its seeds and GPS
      priors (first step 0.4 m, another 6 m); on the Lund photo street the incremental mapper
      splits the sequence into several models where the global one registers 29/29.
    - ``global``: GLOMAP (rotation averaging + global positioning + bundle adjustment),
      ``pycolmap.global_mapping``.
    - ``incremental``: COLMAP's incremental mapper, ``pycolmap.incremental_mapping``
      (uses GPS pose priors in bundle adjustment).
    """

    AUTO = "auto"
    GLOBAL = "global"
    INCREMENTAL = "incremental"


class Strategy(enum.StrEnum):
    """How training adds and removes Gaussians (gsplat strategies).

    - ``default``: 3DGS adaptive density control (clone, split, prune, opacity reset),
      ``gsplat.strategy.DefaultStrategy``; the count follows the scene, capped by max_gaussians.
    - ``mcmc``: 3DGS as Markov chain Monte Carlo (Kheradmand et al. 2024),
      ``gsplat.strategy.MCMCStrategy``: low-opacity Gaussians are relocated, the count grows to
      max_gaussians exactly; with its opacity and scale regularisers.
    """

    DEFAULT = "default"
    MCMC = "mcmc"


class AlignMode(enum.StrEnum):
    """How georef aligns the SfM model to GPS.

    - ``gravity``: 4 degrees of freedom (scale, heading, translation) after levelling the model
      with the cameras' up direction; robust for the nearly straight paths of a walk.
    - ``sim3``: a full 7-DoF similarity from positions alone (needs well spread positions).
    """

    GRAVITY = "gravity"
    SIM3 = "sim3"


@dataclass(kw_only=True)
class SfmConfig:
    """Options of structure-from-motion (pycolmap SIFT, imported pairs, global/incremental)."""

    max_image_size: int = opt(0, "downscale images to this longest side for SIFT (0: as they are)")
    max_num_features: int = opt(4096, "most SIFT features per image")
    peak_threshold: float = opt(
        0.004, "SIFT peak threshold (lower: more, weaker features; COLMAP's default 0.0067)"
    )
    upsample_below: int = opt(
        1200, "SIFT upsamples images smaller than this x2 first (COLMAP's first_octave -1); "
        "larger ones are used as they are (measured on 1440² views: 4.7x faster, 3,400 keypoints "
        "each instead of 14,700)"
    )
    upright: bool = opt(
        False, "upright SIFT on panorama views (they are level); photos always get oriented "
        "SIFT. Measured on the 2048 walk: 13 % fewer keypoints, 547 instead of 690 points, GPS "
        "RMS 0.84 instead of 0.90 m"
    )
    ownership_mask: bool = opt(
        True, "extract each panorama direction in one view only (off: overlapping views "
        "detect their shared parts twice: more matches, slower)"
    )
    neighbours: int = opt(8, "panoramas/photos matched with each one: k nearest by GPS")
    radius_m: float = opt(50.0, "GPS neighbours farther than this are not matched, metres")
    time_neighbours: int = opt(
        2, "neighbours by capture order on each side (always; all pairs use them without GPS)"
    )
    view_overlap_deg: float = opt(
        0.0, "match only the views of two panoramas whose axes are within this angle once the "
        "panoramas' relative heading is known (estimated from their features); 0: every view "
        "pair", added=True)
    sift_device: str = opt(
        "auto", "SIFT extraction and matching on: auto (the GPU when the installed pycolmap has "
        "CUDA; pip's wheels have not), cpu, cuda. GPU and CPU SIFT give different features: the "
        "device used is part of what a resume checks", choices=("auto", "cpu", "cuda"),
        added=True)
    mapper: Mapper = opt(Mapper.AUTO, "mapper: auto, incremental or global (GLOMAP)")
    gps_priors: bool = opt(
        True, "use GPS positions as pose priors (global mapper: a pose-prior bundle adjustment "
        "after mapping; incremental: in its bundle adjustments)"
    )
    min_num_inliers: int = opt(15, "fewest verified matches for a pair to count")
    min_registered_fraction: float = opt(
        0.5, "fail when fewer than this fraction of the images register"
    )
    seed: int = opt(0, "random seed of RANSAC and the mappers")
    num_threads: int = opt(-1, "threads (-1: all cores)", hash=False)
    farm_chunk_images: int = opt(
        200, "with a farm: images per SIFT work item (whole panoramas; about 30 s or more of "
        "work each, as starting an item costs 1-3 s)", hash=False)
    farm_chunk_pairs: int = opt(
        2000, "with a farm: image pairs per matching work item (whole panorama pairs)",
        hash=False)


@dataclass(kw_only=True)
class GeorefConfig:
    """Options of geo-registration (SfM frame -> local ENU metres, Z up)."""

    mode: AlignMode = opt(AlignMode.GRAVITY, "alignment: gravity (4-DoF) or sim3 (7-DoF)")
    max_error_m: float = opt(5.0, "GPS residual above which a position is an outlier, metres")
    min_positions: int = opt(3, "fewest registered positions with GPS needed to align")
    check: bool = opt(True, "refuse a model that contradicts its GPS (see README: the GPS check)",
                      added=True)
    check_tolerance_m: float = opt(
        5.0, "GPS check: a frame agrees with its fix within this distance after the fit, metres",
        added=True)
    check_min_fraction: float = opt(
        0.5, "GPS check: fewest frames (share of those with GPS) that must agree", added=True)
    check_max_extent_ratio: float = opt(
        2.0, "GPS check: largest ratio between the model's and the GPS track's extent (either "
        "way)", added=True)
    export_text: bool = opt(True, "also write the model as COLMAP text (georef/sparse_text)")
    export_transforms: bool = opt(True, "also write a nerfstudio transforms.json")


@dataclass(kw_only=True)
class TrainConfig:
    """Options of training (3DGS on the georeferenced views; CUDA via gsplat, or the CPU).

    Defaults are the ``balanced`` preset: the 3DGS paper's / gsplat's ``simple_trainer.py``
    hyper-parameters for 15k steps with at most 3M Gaussians (``quality``: 30k steps, no cap).
    ``downscale`` is the only place image resolution is lowered.
    """

    steps: int = opt(15000, "optimisation steps (one view per step)")
    downscale: float = opt(1.0, "shrink the views by this factor for training (1: full size)",
                           min=1.0)
    sh_degree: int = opt(3, "spherical-harmonics degree of the colours (0..3)", min=0, max=3)
    sh_degree_interval: int = opt(1000, "raise the SH degree by one every this many steps")
    max_gaussians: int = opt(3_000_000, "cap on the number of Gaussians (0: no cap)")
    max_init_points: int = opt(0, "start from at most this many SfM points (0: all)")
    holdout_every: int = opt(8, "hold out every n-th image (by name) for evaluation (0: none)")
    ssim_lambda: float = opt(0.2, "weight of the (1 - SSIM) term of the loss against L1")
    init_opacity: float = opt(0.1, "opacity of the initial Gaussians")
    refine_start: int = opt(500, "step where densification starts")
    refine_stop: int = opt(15000, "step where densification stops")
    refine_every: int = opt(100, "densify and prune every this many steps")
    reset_every: int = opt(3000, "reset opacities every this many steps")
    grow_grad2d: float = opt(0.0002, "image-space gradient above which a Gaussian is split/cloned")
    prune_opacity: float = opt(0.005, "prune Gaussians below this opacity")
    strategy: Strategy = opt(
        Strategy.DEFAULT, "densification: default (3DGS split/clone/prune) or mcmc (3DGS-MCMC: "
        "relocates dead Gaussians, grows to max_gaussians exactly)"
    )
    opacity_reg: float = opt(
        -1.0, "weight of the mean-opacity regulariser (-1: 0.01 with mcmc, as gsplat, else 0)"
    )
    scale_reg: float = opt(
        -1.0, "weight of the mean-scale regulariser (-1: 0.01 with mcmc, as gsplat, else 0)"
    )
    seed: int = opt(0, "random seed (view order, initial rotations)")
    eval_every: int = opt(
        0, "evaluate on the held-out views every this many steps (0: at the start and the end)",
        hash=False,
    )
    preview_every: int = opt(100, "render train/preview.png every this many steps (0: never)",
                             hash=False)
    preview_view: str = opt(
        "", "image the preview is rendered from, e.g. '00/2.jpg' (default: the first training "
        "view); a GUI may override it with train/preview_camera.json", hash=False,
    )
    checkpoint_every: int = opt(500, "save a checkpoint every this many steps", hash=False)
    metrics_every: int = opt(10, "report gaussians, steps/s and memory every this many steps",
                             hash=False)
    cpu_limit_s: float = opt(
        3600.0, "on the CPU, refuse a run estimated longer than this, seconds", hash=False
    )
    allow_slow: bool = opt(False, "train on the CPU even when over cpu_limit_s", hash=False)
    blocks: int = opt(
        1, "train the capture as this many spatial blocks on the ground plane, merged into one "
        "splat (VastGaussian-style; each block trains `steps` steps; with a farm the blocks run "
        "on its peers); 1: the whole capture at once", min=1, max=64, added=True)


class ExportFormat(enum.StrEnum):
    """What the export stage writes: splat files, a 3D Tiles tileset, a textured mesh, or
    ``all`` of them (kept as written: a 3D Tiles from ``all`` is skipped without GPS, a named
    one is an error)."""

    PLY = "ply"
    SPLAT = "splat"
    SPZ = "spz"
    COMPRESSED_PLY = "compressed_ply"
    SOG = "sog"
    GLB_SPLAT = "glb_splat"
    TILES = "3dtiles"
    GLB = "glb"
    OBJ = "obj"
    ALL = "all"


class MeshMethod(enum.StrEnum):
    """How the export stage makes a surface from the splat (see README "Textured mesh")."""

    TSDF = "tsdf"
    POISSON = "poisson"


def parse_formats(value: Any) -> tuple[ExportFormat, ...]:
    """``"ply, spz"`` or ``["ply", "spz"]`` -> ``(PLY, SPZ)``: order kept, duplicates dropped;
    ``compressed`` is accepted for ``compressed_ply``, ``-`` for ``_`` (``glb-splat``), ``;``
    for ``,``.

    Raises:
        ConfigError: an unknown format (naming it and the choices) or an empty list.
    """
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    out: list[ExportFormat] = []
    for tok in (str(t).strip().lower().replace("-", "_") for t in items):
        if not tok:
            continue
        tok = "compressed_ply" if tok == "compressed" else tok
        try:
            f = ExportFormat(tok)
        except ValueError:
            raise ConfigError(
                f"ExportConfig.formats: unknown format {tok!r}; choose from "
                f"{', '.join(f.value for f in ExportFormat if f != ExportFormat.ALL)} or all"
            ) from None
        if f not in out:
            out.append(f)
    if not out:
        raise ConfigError("ExportConfig.formats is empty; name at least one format")
    return tuple(out)


def parse_corner(value: Any) -> tuple[float, float, float] | None:
    """``"x,y,z"`` (``;`` also separates) or ``[x, y, z]`` (ENU metres) -> ``(x, y, z)``;
    an empty text, list or None -> None.

    Raises:
        ConfigError: not three numbers.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        vals = ([float(v) for v in value.replace(";", ",").split(",")] if isinstance(value, str)
                else [float(v) for v in value])
    except (TypeError, ValueError):
        vals = []
    if not vals:
        return None if not isinstance(value, str) and len(value) == 0 else _bad_corner(value)
    if len(vals) != 3:
        _bad_corner(value)
    return (vals[0], vals[1], vals[2])


def _bad_corner(value: Any) -> Any:
    raise ConfigError(f"expected 'x,y,z' in ENU metres, got {value!r}")


def corner_text(v: tuple[float, float, float] | None) -> str:
    """A crop corner as the ``'x,y,z'`` text older versions stored ("" for none)."""
    if v is None:
        return ""
    return ",".join(r[:-2] if (r := repr(float(x))).endswith(".0") else r for x in v)


@dataclass(kw_only=True)
class ExportConfig:
    """Options of export (splat formats, textured mesh, georeferencing sidecars).

    Coordinates (crop box) are ENU metres about the project origin (x east, y north, z up).
    """

    formats: tuple[ExportFormat, ...] = opt(
        (ExportFormat.PLY, ExportFormat.SPLAT, ExportFormat.SPZ, ExportFormat.COMPRESSED_PLY),
        "formats to write (comma-separated on the command line): ply, splat, spz, "
        "compressed_ply, sog, glb_splat (glTF KHR_gaussian_splatting), 3dtiles (3D Tiles for "
        "Cesium, needs GPS) (gaussians), glb, obj (textured mesh); 'all' for every one",
        parse=lambda v: parse_formats(v), text=lambda v: ",".join(map(str, v)),
    )
    output_dir: str = opt("", "write here instead of the project's exports/ folder", hash=False)
    name: str = opt("scene", "base name of the exported files (scene.ply, scene.spz ...)")
    source: str = opt(
        "", "splat to export: empty = the trained train/splat.ply; else an edited version saved "
        "from the viewer, by name (v001) or file (edits/v001.ply)", added=True)
    spz_version: int = opt(4, "SPZ format version: 4 (ZSTD, current) or 3 (gzip, older viewers)",
                           choices=(4, 3))
    axes: str = opt(
        "viewer", "axes of the ply, splat, spz, compressed_ply and sog files: viewer = x east, "
        "y down, z north (the 3DGS/COLMAP convention SuperSplat, PlayCanvas and most splat "
        "viewers show upright); enu = x east, y north, z up (GIS; SPZ then in its "
        "specification's RUB axes). glb_splat, 3dtiles and the mesh keep their standards' axes",
        added=True, choices=("viewer", "enu"))
    glb_splat_spz: bool = opt(
        False, "glb_splat: compress with KHR_gaussian_splatting_compression_spz_2 (SPZ v3 inside)",
        added=True)
    tiles_sh_degree: int = opt(3, "3dtiles: SH degree of the tiles (0..3, at most max_sh_degree)",
                               added=True, min=0, max=3)
    tiles_min_opacity: float = opt(0.0, "3dtiles: drop gaussians less opaque than this (0..1)",
                                   added=True, min=0.0, max=1.0)
    tiles_max_gaussians: int = opt(65536, "3dtiles: most gaussians in one tile", added=True,
                                   min=1)
    crop_min: tuple[float, float, float] | None = opt(
        None, "crop box lower corner x,y,z, ENU metres (empty: no crop)",
        parse=lambda v: parse_corner(v), text=lambda v: corner_text(v))
    crop_max: tuple[float, float, float] | None = opt(
        None, "crop box upper corner x,y,z, ENU metres (empty: no crop)",
        parse=lambda v: parse_corner(v), text=lambda v: corner_text(v))
    min_opacity: float = opt(0.0, "drop gaussians with opacity below this (0..1; 0: keep all)",
                             min=0.0, max=1.0)
    remove_floaters: bool = opt(False, "remove isolated gaussians (statistical outliers)")
    floater_k: int = opt(16, "floater removal: neighbours per gaussian")
    floater_std_ratio: float = opt(3.0, "floater removal: threshold in standard deviations")
    max_sh_degree: int = opt(3, "cap the spherical-harmonics degree of splat files (0..3)",
                             min=0, max=3)
    mesh_method: MeshMethod = opt(
        MeshMethod.TSDF, "surface from the splat: tsdf (fusion of depth rendered from the "
        "capture's cameras, measured best) or poisson (screened Poisson on the gaussian "
        "centres, closed)"
    )
    mesh_faces: int = opt(300_000, "target triangle count of the mesh after decimation",
                          min=100)
    mesh_min_opacity: float = opt(0.5, "mesh: only gaussians at least this opaque shape it",
                                  min=0.0, max=1.0)
    texture_size: int = opt(4096, "mesh texture width = height, pixels", min=64, max=16384)
    bake_views: int = opt(12, "mesh texture: views of the splat rendered and projected", min=1)
    converter: str = opt(
        "", "external converter run after the export without a shell, e.g. 'kexconv {obj} {out}' "
        "({obj}, {glb}, {ply}, {spz} ...: files of this run; {out}: the output folder; {name}); "
        "empty: none"
    )


STAGE_CONFIGS: dict[str, type] = {
    "ingest": IngestConfig,
    "reproject": ReprojectConfig,
    "sfm": SfmConfig,
    "georef": GeorefConfig,
    "train": TrainConfig,
    "export": ExportConfig,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # A CPU run in minutes: small views.
    "test": {
        "reproject": {"max_size": 512},
        "train": {"steps": 300, "downscale": 2.0, "sh_degree": 1, "sh_degree_interval": 100,
                  "max_gaussians": 60000, "refine_start": 100, "refine_every": 50,
                  "preview_every": 50, "checkpoint_every": 100, "eval_every": 50},
    },
    "fast": {
        "reproject": {"max_size": 1024},
        "train": {"steps": 7000, "downscale": 1.0, "max_gaussians": 1_000_000,
                  "eval_every": 1000},
    },
    "balanced": {
        "reproject": {"max_size": 1600},
        "train": {"steps": 15000, "downscale": 1.0, "max_gaussians": 3_000_000,
                  "eval_every": 1000},
    },
    "quality": {
        "reproject": {"max_size": 1600},
        "train": {"steps": 30000, "downscale": 1.0, "max_gaussians": 0, "eval_every": 2000},
    },
}
"""Named presets: per stage, the fields they set. Anything a user sets on top wins."""


@dataclass(kw_only=True)
class ProjectConfig:
    """Every stage's options, the preset they started from, and the compute device."""

    preset: str = "balanced"
    device: Device = Device.AUTO
    ingest: IngestConfig = field(default_factory=IngestConfig)
    reproject: ReprojectConfig = field(default_factory=ReprojectConfig)
    sfm: SfmConfig = field(default_factory=SfmConfig)
    georef: GeorefConfig = field(default_factory=GeorefConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @classmethod
    def from_preset(cls, name: str) -> ProjectConfig:
        """Defaults with preset `name` applied (:func:`apply_preset`).

        Raises:
            ConfigError: an unknown preset.
        """
        return apply_preset(cls(), name)

    def stage(self, name: str) -> Any:
        """The config dataclass of stage `name`."""
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (enums as strings)."""
        out: dict[str, Any] = {"preset": self.preset, "device": str(self.device)}
        for s in STAGES:
            out[s] = config_to_dict(getattr(self, s))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectConfig:
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise ConfigError."""
        unknown = set(data) - {"preset", "device", *STAGES}
        if unknown:
            raise ConfigError(f"unknown config sections: {', '.join(sorted(unknown))}")
        cfg = cls(preset=str(data.get("preset", "balanced")))
        cfg.device = _coerce(Device, data.get("device", "auto"), "device")
        for s in STAGES:
            setattr(cfg, s, update_config(STAGE_CONFIGS[s](), data.get(s, {})))
        return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A stage config as a JSON-ready dict (enums as their string values; an option with a
    ``text`` form, the export formats and crop corners, as that text: the comma strings
    ``project.json`` has always held, so older versions still read it)."""
    return {f.name: _json_value(f, getattr(cfg, f.name)) for f in fields(cfg)}


def _json_value(f: dataclasses.Field, v: Any) -> Any:
    return f.metadata["text"](v) if "text" in f.metadata else _plain(v)


def _plain(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


@dataclass(frozen=True)
class Option:
    """One option of a stage config, as the CLI and the GUI forms show it.

    Attributes:
        name: the field name; type: its resolved type (bool, int, float, str, an enum, or a
            tuple type with a ``parse`` function); default; help: the help text.
        min, max: inclusive bounds; above, below: exclusive bounds; choices: the allowed
            values (each None when the option has none; an enum's members are its choices).
        hash: False when changing it does not re-run the stage.
    """

    name: str
    type: Any
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    hash: bool = True

    @property
    def is_enum(self) -> bool:
        return isinstance(self.type, type) and issubclass(self.type, enum.Enum)

    def range_text(self) -> str:
        """The range in words (``"0..3"``, ``">= 1"``, ``"(0, 170)"``, ``"3 or 4"``), "" for
        none."""
        if self.choices is not None:
            vals = [str(_plain(c)) for c in self.choices]
            return ", ".join(vals[:-1]) + f" or {vals[-1]}" if len(vals) > 1 else vals[0]
        lo = f"[{self.min:g}" if self.min is not None else (
            f"({self.above:g}" if self.above is not None else None)
        hi = f"{self.max:g}]" if self.max is not None else (
            f"{self.below:g})" if self.below is not None else None)
        if lo and hi:
            return f"{lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return ""

    def check(self, value: Any, where: str) -> None:
        """Raise :class:`ConfigError` naming `where` (``train.downscale``) and the range when
        `value` is outside it."""
        if self.choices is not None:
            ok = value in self.choices
        else:
            try:
                ok = ((self.min is None or value >= self.min)
                      and (self.max is None or value <= self.max)
                      and (self.above is None or value > self.above)
                      and (self.below is None or value < self.below))
            except TypeError:
                ok = True
        if not ok:
            rng = self.range_text()
            raise ConfigError(f"{where} must be {'in ' if rng[0] in '[(' else ''}{rng}, got "
                              f"{_plain(value)!r}")


def options(cfg_type: type) -> list[Option]:
    """The options of stage config class `cfg_type`, in field order."""
    types = field_types(cfg_type)
    out = []
    for f in fields(cfg_type):
        m = f.metadata
        choices = m.get("choices")
        out.append(Option(f.name, types[f.name], f.default, m.get("help", ""), m.get("min"),
                          m.get("max"), m.get("above"), m.get("below"),
                          tuple(choices) if choices is not None else None, m.get("hash", True)))
    return out


def option(cfg_type: type, name: str) -> Option:
    """Option `name` of stage config class `cfg_type` (KeyError when there is none)."""
    return next(o for o in options(cfg_type) if o.name == name)


def _where(cfg_type: type, name: str) -> str:
    """``train.downscale`` for TrainConfig's downscale (how --set and the README name it)."""
    stage = next((s for s, t in STAGE_CONFIGS.items() if t is cfg_type), None)
    return f"{stage}.{name}" if stage else f"{cfg_type.__name__}.{name}"


def _coerce(typ: Any, value: Any, name: str, parse: Any = None) -> Any:
    if parse is not None:
        try:
            return parse(value)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(name.split(".")[0]) or
                              msg.startswith("ExportConfig") else f"{name}: {msg}") from None
    try:
        if isinstance(typ, type) and issubclass(typ, enum.Enum):
            return typ(value)
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return str(value)
    except (ValueError, TypeError):
        choices = ""
        if isinstance(typ, type) and issubclass(typ, enum.Enum):
            choices = f" (choose one of {', '.join(m.value for m in typ)})"
        raise ConfigError(f"bad value {value!r} for {name}{choices}") from None
    return value


def field_types(cfg_type: type) -> dict[str, Any]:
    """Resolved type of each field of a config dataclass."""
    return get_type_hints(cfg_type)


def update_config(cfg: Any, values: dict[str, Any]) -> Any:
    """A copy of stage config `cfg` with `values` applied, each coerced to its field's type
    (strings too: ``"0.5"``, ``"ply,spz"``, ``"1,2,3"``) and checked against its range.

    Raises:
        ConfigError: an unknown field, a value that does not fit the field's type, or one
            outside the option's range (the message names the option, e.g. ``train.downscale``,
            and the range).
    """
    cls = type(cfg)
    types = field_types(cls)
    meta = {f.name: f.metadata for f in fields(cfg)}
    changes = {}
    for k, v in values.items():
        if k not in meta:
            raise ConfigError(
                f"{cls.__name__} has no option {k!r}; known: {', '.join(sorted(meta)) or 'none'}"
            )
        value = _coerce(types[k], v, f"{cls.__name__}.{k}", meta[k].get("parse"))
        option(cls, k).check(value, _where(cls, k))
        changes[k] = value
    return dataclasses.replace(cfg, **changes)


def apply_preset(cfg: ProjectConfig, name: str) -> ProjectConfig:
    """Apply preset `name` to `cfg` in place (its stages' fields; the rest stays) and record
    it in ``cfg.preset``; returns `cfg`. The one way a preset is applied (new projects, the
    CLI's ``--preset``, the GUI, the train stage's and doctor's estimates).

    Raises:
        ConfigError: an unknown preset (naming the choices).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    for stage, values in PRESETS[name].items():
        setattr(cfg, stage, update_config(getattr(cfg, stage), values))
    cfg.preset = name
    return cfg


def config_hash(cfg: Any) -> str:
    """SHA-256 of the fields that invalidate a stage (metadata hash=True), hex.

    An option added after projects existed (metadata ``added``) counts only when it differs
    from its default, which gives the old behaviour: adding it does not make every existing
    project run again. An option with a ``text`` form (the export formats and crop corners,
    typed in memory, comma strings on disk) is hashed as that text, so existing projects keep
    their fingerprints."""
    data = {
        f.name: _json_value(f, getattr(cfg, f.name))
        for f in fields(cfg) if f.metadata.get("hash", True)
        and not (f.metadata.get("added") and getattr(cfg, f.name) == f.default)
    }
    blob = json.dumps({"type": type(cfg).__name__, **data}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_config(cfg: Any) -> None:
    """Check every option of stage config `cfg` against its range (for a config built
    directly rather than through :func:`update_config`).

    Raises:
        ConfigError: the first option outside its range (named with its range).
    """
    for o in options(type(cfg)):
        o.check(getattr(cfg, o.name), _where(type(cfg), o.name))
