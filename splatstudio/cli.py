"""The ``splatstudio`` command: parse arguments, update the project's config, run stages.

Thin on purpose: every option comes from the stage config dataclasses (:mod:`splatstudio.config`)
and every stage runs through :class:`splatstudio.pipeline.runner.PipelineRunner`, exactly as the
GUI does. Exit codes: 0 success, 1 a stage failed, 2 bad usage or input, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import (
    PRESETS,
    STAGE_CONFIGS,
    STAGES,
    Device,
    ProjectConfig,
    apply_preset,
    options,
    update_config,
)
from .doctor import REQUIREMENTS
from .errors import DiskFullError, InputError, SplatStudioError, StageError, is_disk_full
from .status import StageState

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

COMMANDS = ("run", *STAGES, "status", "render", "gui", "doctor", "convert", "farm", "worker")
"""The sub-commands; any other first argument is a PATH to open (``splatstudio PATH``)."""

OPEN_SCAN_FILES = 500
"""``splatstudio FOLDER``: how many of its files are read for an image header at most."""


# Short spellings the issue texts promise (``splatstudio export -p P --format F -o DIR``).
OPTION_ALIASES = {("export", "formats"): ["--format"], ("export", "output_dir"): ["-o", "--output"]}


def _add_stage_options(parser: argparse.ArgumentParser, stage: str) -> None:
    group = parser.add_argument_group(f"{stage} options (saved in project.json)")
    for o in options(STAGE_CONFIGS[stage]):
        flags = ["--" + o.name.replace("_", "-"), *OPTION_ALIASES.get((stage, o.name), [])]
        rng = o.range_text()
        help_ = (o.help + (f"; {rng}" if rng and not o.is_enum else "")
                 + f" (default: {_plain_default(o.default)})")
        dest = f"{stage}__{o.name}"
        if o.type is bool:
            group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, help=help_)
        elif o.is_enum:
            choices = [m.value for m in o.type]
            group.add_argument(*flags, dest=dest, choices=choices, help=help_)
        elif o.type in (int, float, str):
            group.add_argument(*flags, dest=dest, type=o.type, metavar=o.name.upper(), help=help_)
        else:  # a tuple (formats, a crop corner): its text, parsed by update_config
            group.add_argument(*flags, dest=dest, type=str, metavar=o.name.upper(), help=help_)


def _plain_default(v: Any) -> Any:
    if isinstance(v, tuple):
        return ",".join(str(_plain_default(x)) for x in v)
    return "none" if v is None else getattr(v, "value", v)


def _stage_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if "__" in key and value is not None:
            stage, name = key.split("__", 1)
            out.setdefault(stage, {})[name] = value
    for item in getattr(args, "set", None) or []:
        try:
            lhs, value = item.split("=", 1)
            stage, name = lhs.split(".", 1)
        except ValueError:
            raise SystemExit(f"splatstudio: --set expects STAGE.OPTION=VALUE, got {item!r}") from None
        out.setdefault(stage, {})[name] = value
    return out


def _common(p: argparse.ArgumentParser, project_required: bool = True) -> None:
    p.add_argument("-p", "--project", required=project_required, type=Path, help="project folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=list(PRESETS), help="apply a named preset to the config")
    p.add_argument("--device", choices=[d.value for d in Device], help="compute device")
    p.add_argument("--force", action="store_true", help="run even if already done")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also a line for each farm work item that changes state (peer, state)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds a cancelled stage gets "
                   "to stop before its processes are killed (default 10)")
    p.add_argument("--farm", metavar="DIR", nargs="?", const="",
                   help="switch the LAN farm on for this run (the folder of `farm init`, "
                   "default ~/.config/splatstudio/farm): SfM features and matching, and the "
                   "blocks of train.blocks, are spread over its peers")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``splatstudio`` command."""
    parser = argparse.ArgumentParser(
        prog="splatstudio",
        description="Georeferenced 3D Gaussian Splatting from 360-degree panoramas and GPS photos.",
    )
    parser.add_argument("--version", action="version", version=f"splatstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run every stage not yet done, in order")
    p.add_argument("input", type=Path, help="folder of equirect panoramas or photos with GPS")
    _common(p)
    _run_options(p)
    p.add_argument("--until", choices=STAGES, help="stop after this stage")
    p.add_argument("--set", action="append", metavar="STAGE.OPTION=VALUE",
                   help="set any stage option, e.g. --set reproject.max_size=800 (repeatable)")

    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage")
        _common(p)
        _run_options(p)
        if stage == "ingest":
            p.add_argument("--input", type=Path, help="input folder (creates the project if new)")
        _add_stage_options(p, stage)

    p = sub.add_parser("status", help="show the state of every stage")
    _common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (see README)")

    p = sub.add_parser("render", help="render a splat file (.ply, .splat, .spz, .sog) to a PNG, "
                       "or a fly-through MP4 with --path")
    p.add_argument("scene", type=Path, nargs="?",
                   help="splat file: standard or compressed PLY, .splat, .spz, .sog (default with "
                   "--project: its train/splat.ply)")
    p.add_argument("-o", "--output", type=Path,
                   help="PNG to write (required, except with --view list)")
    p.add_argument("-p", "--project", type=Path,
                   help="project whose trained splat and registered views to use")
    p.add_argument("--view", help="render from this registered view of --project (its COLMAP "
                   "image name, e.g. 00/2.jpg; 'list' prints them); size from the view unless "
                   "--width/--height are given")
    p.add_argument("--eye", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="camera position (scene units); default: automatic framing")
    p.add_argument("--target", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="point looked at (default: the scene's median)")
    p.add_argument("--up", type=float, nargs=3, default=(0.0, 0.0, 1.0), metavar=("X", "Y", "Z"),
                   help="world up (default 0 0 1, ENU; COLMAP-frame scenes often use 0 -1 0)")
    p.add_argument("--fov", type=float, default=60.0, help="horizontal field of view, degrees")
    p.add_argument("--width", type=int, help="pixels (default 1280, or the view's)")
    p.add_argument("--height", type=int, help="pixels (default 720, or the view's)")
    p.add_argument("--background", type=float, nargs=3, default=(0.0, 0.0, 0.0),
                   metavar=("R", "G", "B"), help="background colour in [0, 1]")
    p.add_argument("--device", choices=[d.value for d in Device], default="auto")
    p.add_argument("--path", help="render an MP4 fly-through (-o video.mp4) instead of a PNG: "
                   "'capture' (the smoothed capture path of --project) or a keyframes JSON file "
                   '([{"eye": [x, y, z], "target": [x, y, z]}, ...], scene units)')
    p.add_argument("--frames", type=int, default=120, help="video frames (default 120)")
    p.add_argument("--fps", type=float, default=30.0, help="video frames per second (default 30)")

    p = sub.add_parser("gui", help="open the desktop application (the same as `splatstudio "
                       "PATH` or a bare `splatstudio`)")
    p.add_argument("path", type=Path, nargs="?",
                   help="a project folder, a folder of images (becomes a new project) or a "
                   "splat file (opens in the viewer)")
    p.add_argument("--screenshot", type=Path, metavar="PNG",
                   help="save the window to PNG once PATH is shown, print its state as JSON "
                   "and quit (for smoke tests)")

    p = sub.add_parser("doctor", help="check what this machine and installation can run")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--projects-dir", type=Path, default=None,
                   help="folder whose free disk space to report (default: the working folder)")
    p.add_argument("--require", default="", metavar="LIST",
                   help="comma-separated needs that must work, else exit 1: "
                   + ", ".join(REQUIREMENTS))
    p.add_argument("--device", choices=[d.value for d in Device],
                   help="'cuda': exit 1 when CUDA training cannot run here")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="exit 1 when the train stage would refuse this preset here (on the CPU)")
    p.add_argument("--no-measure", action="store_true",
                   help="skip timing CPU training steps (no preset estimates)")
    p.add_argument("--build-gsplat", action="store_true",
                   help="compile gsplat's CUDA kernels now instead of on the first training")

    from .farm.cli import add_parsers as add_farm_parsers

    add_farm_parsers(sub)

    p = sub.add_parser("convert", help="convert a splat file to another format")
    p.add_argument("src", type=Path, help="input splat file")
    p.add_argument("dst", type=Path,
                   help="output: .ply, .compressed.ply, .splat, .spz, .sog or .glb (glTF "
                   "KHR_gaussian_splatting) (format from the name); read back and checked")
    p.add_argument("--glb-spz", action="store_true",
                   help=".glb: compress with KHR_gaussian_splatting_compression_spz_2 (SPZ v3)")
    p.add_argument("--max-sh-degree", type=int, help="drop SH bands above this degree")
    p.add_argument("--min-opacity", type=float, help="drop gaussians under this opacity (0..1)")
    p.add_argument("--crop-min", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="crop box minimum corner (scene units, ENU metres for our scenes)")
    p.add_argument("--crop-max", type=float, nargs=3, metavar=("X", "Y", "Z"))
    p.add_argument("--remove-floaters", action="store_true",
                   help="drop statistical outliers among the gaussian centres")
    return parser


class _Console:
    """Turns runner events into tqdm progress bars and log lines on stderr; with `verbose`, a
    line per state change of each farm work item (never one per progress update)."""

    def __init__(self, quiet: bool, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.bars: dict[str, Any] = {}
        self._item_states: dict[tuple[str, str], str] = {}

    def _write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "progress" and not self.quiet:
            bar = self.bars.get(event.stage)
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(
                    total=1000,
                    desc=f"{event.stage:>9}",
                    bar_format="{desc} {percentage:3.0f}%|{bar:30}| {elapsed}<{remaining}{postfix}",
                    file=sys.stderr,
                    leave=True,
                    dynamic_ncols=True,
                )
                self.bars[event.stage] = bar
            bar.n = int(event.fraction * 1000)
            bar.set_postfix_str(event.message, refresh=False)
            bar.refresh()
        elif kind == "log":
            if event.level in ("warning", "error") or (not self.quiet and event.level == "info"):
                prefix = "" if event.level == "info" else f"{event.level}: "
                self._write(f"[{event.stage}] {prefix}{event.message}")
        elif kind == "itemprogress" and self.verbose:
            key = (event.stage, event.item)
            if self._item_states.get(key) != event.state:
                self._item_states[key] = event.state
                where = f" on {event.peer}" if event.peer else ""
                self._write(f"[{event.stage}] item {event.item} {event.state}{where}")
        elif kind == "stagechanged":
            bar = self.bars.pop(event.stage, None)
            if bar is not None:
                bar.close()
            if event.state == StageState.SKIPPED and not self.quiet:
                self._write(f"[{event.stage}] up to date, skipped")
            elif event.state.is_problem:
                self._write(f"[{event.stage}] {event.state}: {event.error}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _open_or_create(args: argparse.Namespace, input_dir: Path | None):
    from .project import Project

    root: Path = args.project
    if (root / "project.json").exists():
        project = Project.open(root)
        if input_dir is not None and input_dir.resolve() != project.input_dir:
            raise SplatStudioError(
                f"{project.root}: this project was made from {project.input_dir}, "
                f"not {input_dir.resolve()}; use another project folder"
            )
        return project
    if input_dir is None:
        raise SplatStudioError(
            f"{root}: not a project yet; create it with `splatstudio run INPUT -p {root}` "
            f"or `splatstudio ingest --input INPUT -p {root}`"
        )
    from .errors import InputError

    if not input_dir.is_dir():
        raise InputError(input_dir, "input folder not found (or not a folder)")
    cfg = ProjectConfig.from_preset(args.preset or "balanced")
    _apply_overrides(cfg, args)  # a bad --set is refused before the project folder is made
    return Project.create(root, input_dir, cfg)


def _apply_config(project, args: argparse.Namespace) -> None:
    cfg = project.config
    changed = False
    if getattr(args, "preset", None) and args.preset != cfg.preset:
        apply_preset(cfg, args.preset)
        changed = True
    if getattr(args, "device", None):
        cfg.device = Device(args.device)
        changed = True
    changed = _apply_overrides(cfg, args) or changed
    if changed:
        project.save()


def _apply_overrides(cfg: ProjectConfig, args: argparse.Namespace) -> bool:
    """Apply the stage options and ``--set`` values of `args` to `cfg` (each checked against
    its option's range); True when there were any.

    Raises:
        SplatStudioError: an unknown stage; ConfigError: an unknown option or a bad value
            (naming it and its range).
    """
    overrides = _stage_overrides(args)
    for stage, values in overrides.items():
        if stage not in STAGE_CONFIGS:
            raise SplatStudioError(f"unknown stage {stage!r} in --set; stages: {', '.join(STAGES)}")
        setattr(cfg, stage, update_config(getattr(cfg, stage), values))
    return bool(overrides)


def _print_summary(project, stages: list[str], quiet: bool) -> None:
    if quiet:
        return
    summary = project.summary()["stages"]
    for s in stages:
        st = summary[s]
        secs = f"{st['seconds']:.1f} s" if st["seconds"] is not None else ""
        metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in st["metrics"].items())
        print(f"{s:>9}  {st['state']:<9} {secs:>9}  {metrics}")


def _fmt(v: Any) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}"
    return str(int(v)) if isinstance(v, float) else str(v)


def _run(project, args: argparse.Namespace, stages: list[str] | None, until: str | None) -> int:
    from .pipeline.runner import PipelineRunner

    console = _Console(args.quiet, getattr(args, "verbose", False))
    runner = PipelineRunner(project, console, grace_s=args.grace)
    interrupts = {"n": 0}

    def on_sigint(signum, frame):  # first Ctrl-C: cooperative cancel; second: kill now
        interrupts["n"] += 1
        if interrupts["n"] == 1:
            console._write("cancelling (Ctrl-C again to stop at once)...")
        else:
            runner.grace_s = 0.0
            if runner._job is not None:
                runner._job.grace_s = 0.0
        runner.cancel()

    old = signal.signal(signal.SIGINT, on_sigint)
    host = None
    try:
        if getattr(args, "farm", None) is not None:
            from .farm.host import FarmHost

            # the scheduler and this machine's workers (with the project's file server) for
            # this run only; stage processes reach them through SPLATSTUDIO_FARM
            host = FarmHost(args.farm or None).start()
            os.environ.update(host.environment())
            console._write(f"farm {host.credentials.farm_id} on at {host.address}")
        result = runner.run(stages, until=until, force=args.force)
    finally:
        signal.signal(signal.SIGINT, old)
        if host is not None:
            host.stop()
        console.close()
    _print_summary(project, [s for s in STAGES if s in result.states], args.quiet)
    if not result.ok:
        states = set(result.states.values())
        return EXIT_CANCELLED if StageState.CANCELLED in states else EXIT_FAILED
    if result.stopped_at and not args.quiet:
        print(f"stopped before {result.stopped_at}: {result.reason}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .project import Project

    project = Project.open(args.project)
    summary = project.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"project {summary['project']}  (input {summary['input_dir']}, preset {summary['preset']})")
    for s, st in summary["stages"].items():
        state = st["state"] + (" (stale)" if st["stale"] else "")
        secs = f"{st['seconds']:.1f} s" if st["seconds"] is not None else ""
        metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in st["metrics"].items())
        print(f"{s:>9}  {state:<17} {secs:>9}  {metrics}")
        if st["error"] and st["state"].is_problem:
            print(f"{'':>11}{st['error'].splitlines()[0]}")
    return EXIT_OK


def _project_view(project: Path, name: str) -> Any:
    """The :class:`~splatstudio.render.camera.PinholeCamera` of registered image `name` of the
    project's georeferenced model (world = ENU metres, the frame of train/splat.ply); for
    `name` ``"list"``, the names of every registered image instead.

    Raises:
        InputError: no georeferenced model, or no registered image of that name (the message
            lists some that exist).
    """
    from .errors import InputError
    from .pipeline.artifacts import georef_model

    model = georef_model(project)
    sparse = model.path
    cams = {c.name: c for c in model.cameras()}
    if name == "list":
        return list(cams)  # type: ignore[return-value]
    if name not in cams:
        some = ", ".join(list(cams)[:6])
        raise InputError(sparse, f"no registered view {name!r} (views: {some}, ...; "
                         "--view list prints all)")
    return cams[name].camera


def cmd_render(args: argparse.Namespace) -> int:
    """``splatstudio render``: one PNG of any splat file from a look-at camera, a registered
    view of a project (``--project P --view NAME``), or an automatic framing."""
    import time

    import cv2

    from .errors import InputError
    from .pipeline.runner import limit_openmp_spinning

    limit_openmp_spinning()  # the render runs torch in this process: before torch loads
    from .render.camera import PinholeCamera
    from .render.image import camera_for, render_splats
    from .splats.io import load_splats

    if args.path:
        return _render_video(args)
    if args.view and not args.project:
        raise InputError(Path(args.view), "--view needs --project")
    if args.output is None and args.view != "list":
        raise SplatStudioError("render: -o/--output PNG is required (except with --view list)")
    view = _project_view(args.project, args.view) if args.view else None
    if args.view == "list":
        print("\n".join(view))  # type: ignore[arg-type]
        return EXIT_OK
    if args.scene is None:
        if args.project is None:
            raise InputError(Path("."), "give a splat file, or --project for its trained splat")
        from .pipeline.artifacts import trained_splat

        args.scene = trained_splat(args.project)
    if not args.scene.is_file():
        raise InputError(args.scene, "no such file")
    t0 = time.perf_counter()
    try:
        splats = load_splats(args.scene)
    except ValueError as e:
        raise InputError(args.scene, str(e).replace(f"{args.scene}: ", "")) from None
    if view is not None:
        # Keep the view's aspect unless both sides are given; scale the intrinsics to the size.
        w = args.width or (round(view.width * args.height / view.height) if args.height
                           else view.width)  # fmt: skip
        cam = view.resized(w, args.height or round(view.height * w / view.width))
    else:
        w, h = args.width or 1280, args.height or 720
        cam = PinholeCamera(*camera_for(splats.means, w, h, fov_deg=args.fov, eye=args.eye,
                                        target=args.target, up=args.up), w, h)  # fmt: skip
    try:
        img = render_splats(splats, cam.viewmat, cam.K, cam.width, cam.height,
                            device=args.device, background=tuple(args.background))
    except RuntimeError as e:
        raise SplatStudioError(str(e)) from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.output), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise InputError(args.output, "cannot write the PNG")
    print(f"wrote {args.output} ({cam.width}x{cam.height}, {splats.n} gaussians, "
          f"eye {cam.centre.round(3).tolist()}, {time.perf_counter() - t0:.1f} s)")
    return EXIT_OK


def _render_video(args: argparse.Namespace) -> int:
    """``splatstudio render --path capture|KEYFRAMES.json -o video.mp4``: a fly-through MP4
    (:mod:`splatstudio.render.video`) along the project's smoothed capture path or keyframes,
    with a progress bar on stderr."""
    import time

    import numpy as np

    from .errors import InputError
    from .pipeline.runner import limit_openmp_spinning

    limit_openmp_spinning()
    from .render.camera import intrinsics_from_fov
    from .render.video import capture_path_viewmats, keyframe_viewmats, load_keyframes, render_video
    from .splats.io import load_splats

    if args.output is None or args.output.suffix.lower() != ".mp4":
        raise SplatStudioError("render --path: -o/--output must be an .mp4 file")
    if args.view or args.eye is not None:
        raise SplatStudioError("render --path: --view and --eye are for a single PNG")
    if args.frames < 1:
        raise SplatStudioError(f"render --path: --frames must be >= 1, got {args.frames}")
    w, h = args.width or 1280, args.height or 720
    if w % 2 or h % 2 or w <= 0 or h <= 0:
        raise SplatStudioError(f"render --path: video size must be even (H.264), got {w}x{h}")
    if args.scene is None:
        if args.project is None:
            raise InputError(Path("."), "give a splat file, or --project for its trained splat")
        args.scene = args.project / "train" / "splat.ply"
    if not args.scene.is_file():
        raise InputError(args.scene, "no such file (run the train stage first?)")
    if args.path == "capture":
        if args.project is None:
            raise InputError(Path("."), "--path capture needs --project (its capture positions)")
        from .pipeline.capture_path import capture_poses

        poses = capture_poses(args.project)
        if len(poses) < 2:
            raise InputError(args.project / "georef" / "sparse",
                             f"{len(poses)} registered capture positions; a path needs 2 or more "
                             "(run the georef stage, or give a keyframes JSON)")
        vms = capture_path_viewmats(np.array([p.centre for p in poses]), args.frames,
                                    up=tuple(args.up))
    else:
        try:
            eyes, targets = load_keyframes(args.path)
        except ValueError as e:
            raise InputError(Path(args.path), str(e).replace(f"{args.path}: ", "")) from None
        vms = keyframe_viewmats(eyes, targets, args.frames, up=tuple(args.up))
    try:
        splats = load_splats(args.scene)
    except ValueError as e:
        raise InputError(args.scene, str(e).replace(f"{args.scene}: ", "")) from None
    K = intrinsics_from_fov(args.fov, w, h)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        bar = "#" * int(30 * done / total)
        sys.stderr.write(f"\rrender {bar:<30} {done}/{total} frames")
        sys.stderr.flush()

    try:
        info = render_video(splats, vms, K, w, h, args.output, fps=args.fps,
                            device=args.device, background=tuple(args.background),
                            progress=progress)
    except RuntimeError as e:
        raise SplatStudioError(str(e)) from None
    sys.stderr.write("\n")
    print(f"wrote {args.output} ({info['frames']} frames, {w}x{h}, {args.fps:g} fps, "
          f"{splats.n} gaussians, {info['device']}, {time.perf_counter() - t0:.1f} s)")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    """``splatstudio convert``: any splat file to any other format, with filters."""
    from .errors import InputError
    from .splats.io import convert

    if not args.src.is_file():
        raise InputError(args.src, "no such file")
    filters = {
        k: v
        for k, v in {
            "max_sh_degree": args.max_sh_degree,
            "min_opacity": args.min_opacity,
            "crop_min": args.crop_min,
            "crop_max": args.crop_max,
            "remove_floaters": args.remove_floaters or None,
        }.items()
        if v is not None
    }
    save_options = {"spz": True} if args.glb_spz else None
    try:
        info = convert(args.src, args.dst, save_options=save_options, **filters)
        # read back and compared with what was written, within the format's quantisation
        from .splats import apply_filters, load_splats
        from .splats.formats import ReadBackError, verify_readback

        written, _ = apply_filters(load_splats(args.src, format=info["src_format"]), **filters)
        try:
            info["verified"] = verify_readback(Path(info["path"]), info["format"], written,
                                               coordinate_system="RDF")
        except ReadBackError as e:  # what we wrote is wrong: our failure, not the input's
            raise StageError(str(e)) from None
    except ValueError as e:
        raise InputError(None, str(e)) from None
    print(json.dumps(info, indent=2, default=str))
    return EXIT_OK


def open_target(path: Path) -> str:
    """What ``splatstudio PATH`` opens: ``"project"`` (a folder with ``project.json``),
    ``"images"`` (a folder holding a JPEG or PNG image, at any depth: a new project) or
    ``"splat"`` (a file the splat readers recognise: .ply, .compressed.ply, .splat, .spz,
    .sog).

    Raises:
        InputError: `path` does not exist, or is none of these (the message says what it is).
    """
    from .errors import InputError

    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        if (path / "project.json").is_file():
            return "project"
        from .geo.exif import HeaderError, read_image_header
        from .pipeline.ingest import list_input_files

        files = list_input_files(path, recursive=True)
        for f in files[:OPEN_SCAN_FILES]:
            try:
                read_image_header(f)
                return "images"
            except (HeaderError, OSError):
                continue
        looked = f"{len(files)} files" if len(files) <= OPEN_SCAN_FILES else \
            f"the first {OPEN_SCAN_FILES} of {len(files)} files"
        raise InputError(path, "neither a SplatStudio project (no project.json) nor a folder "
                         f"of JPEG or PNG images ({looked}, none an image); open a "
                         "project, a folder of panoramas or photos, or a splat file")
    from .splats.io import detect_format

    try:
        detect_format(path)
    except ValueError:
        raise InputError(path, "not a splat file (.ply, .compressed.ply, .splat, .spz, .sog), "
                         "a project folder or a folder of images") from None
    return "splat"


def cmd_doctor(args: argparse.Namespace) -> int:
    """``splatstudio doctor``: the report; exit 1 when something asked for (``--require``,
    ``--device cuda``, ``--preset``, ``--build-gsplat``) cannot work, or the installation has
    lost its resources. Other failed checks are shown but do not change the exit code."""
    from . import doctor
    from .pipeline.runner import limit_openmp_spinning

    limit_openmp_spinning()  # doctor times CPU training steps in this process: before torch
    wants = [w.strip() for w in args.require.split(",") if w.strip()]
    unknown = [w for w in wants if w not in REQUIREMENTS]
    if unknown:
        raise SplatStudioError(f"doctor: unknown --require {', '.join(unknown)}; choose from "
                               + ", ".join(REQUIREMENTS))
    if args.preset and args.no_measure:
        raise SplatStudioError("doctor: --preset needs the CPU timing; drop --no-measure")
    if args.device == "cuda":
        wants.append("cuda")
    if args.build_gsplat:
        wants.append("gsplat")

    def say(msg: str) -> None:
        if not args.json:
            print(f"  checking {msg}...", file=sys.stderr)

    report = doctor.collect(args.projects_dir, measure=not args.no_measure,
                            build_gsplat=args.build_gsplat, progress=say)
    problems = report.unmet(list(dict.fromkeys(wants)))
    if args.preset:
        est = next((p for p in report.presets if p.preset == args.preset), None)
        if est is not None and est.refused:
            problems.append(f"preset {args.preset}: refused on this CPU (about "
                            f"{est.estimate_s / 3600:.1f} h over cpu_limit_s "
                            f"{est.limit_s / 3600:.1f} h)")
        elif est is None and report.check("torch").state != "ok":
            problems.append(f"preset {args.preset}: no torch, no training")
    gs = report.check("gsplat")
    if args.build_gsplat and gs is not None and not gs.details.get("probe"):
        problems.append(f"gsplat: cannot build: {doctor.GSPLAT_PROBE_MISSING}")
    resources = report.check("resources")
    if resources is not None and resources.state == "fail":  # a broken installation
        problems.append(f"resources: {resources.summary}")
    if args.json:
        print(json.dumps({**report.to_dict(), "problems": problems}, indent=2, default=str))
    else:
        print(report.to_text())
        for p in problems:
            print(f"cannot work: {p}")
    return EXIT_FAILED if problems else EXIT_OK


def _launch_gui(argv: list[str], screenshot: Path | None = None) -> int:
    try:
        from .gui.app import main as gui_main
    except ImportError as e:
        print(f"splatstudio: the desktop application is not available ({e}); "
              "install the 'gui' extra, or use the commands below.\n", file=sys.stderr)
        build_parser().print_help()
        return EXIT_USAGE
    return gui_main(argv, screenshot=screenshot)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``splatstudio`` command; returns the exit code.

    With no arguments it opens the desktop application; ``splatstudio PATH`` (a first argument
    that is not a command) is ``splatstudio gui PATH`` and opens PATH in it (see
    :func:`open_target`).
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return _launch_gui(argv)
    if argv == ["_gl-probe"]:  # doctor's child process: OpenGL facts as one JSON line
        from .gui.system import probe_main

        return probe_main()
    parser = build_parser()
    if argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["gui", *argv]  # `splatstudio PATH [--screenshot PNG]`
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        if args.command == "gui":
            if args.path is not None:
                open_target(args.path)
            return _launch_gui([str(args.path)] if args.path else [], args.screenshot)
        if args.command == "doctor":
            return cmd_doctor(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "render":
            return cmd_render(args)
        if args.command == "convert":
            return cmd_convert(args)
        if args.command in ("farm", "worker"):
            from .farm.cli import run as run_farm

            return run_farm(args)
        if args.command == "run":
            project = _open_or_create(args, args.input)
            _apply_config(project, args)
            return _run(project, args, None, args.until)
        # a single stage
        project = _open_or_create(args, getattr(args, "input", None))
        _apply_config(project, args)
        return _run(project, args, [args.command], None)
    except StageError as e:  # a stage could not run or finish (a full disk, ...)
        print(f"splatstudio: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except SplatStudioError as e:
        print(f"splatstudio: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the environment: one line naming the path, never a traceback
        if is_disk_full(e):
            err: Exception = DiskFullError.from_os_error(e, getattr(args, "project", None) or ".")
        else:
            err = e
            if e.filename is not None:
                err = InputError(e.filename, e.strerror or str(e))
        print(f"splatstudio: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_CANCELLED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
