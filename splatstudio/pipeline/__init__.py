"""The pipeline: one module per stage (`run_<stage>(project, config, events)`) and the runner."""

from __future__ import annotations

STAGE_FUNCTIONS: dict[str, str | None] = {
    "ingest": "splatstudio.pipeline.ingest:run_ingest",
    "reproject": "splatstudio.pipeline.reproject:run_reproject",
    "sfm": "splatstudio.pipeline.sfm:run_sfm",
    "georef": "splatstudio.pipeline.georef:run_georef",
    "train": "splatstudio.pipeline.train:run_train",
    "export": "splatstudio.pipeline.export:run_export",
}
"""Where each stage's function lives ("module:function"), or None while it is not built yet.

Workers import the function lazily, so the runner (and the GUI) never import heavy libraries.
"""

NOT_BUILT_MESSAGE = {
    "sfm": "structure-from-motion is not built in this installation (needs pycolmap: "
    "pip install 'splatstudio[sfm]')",
    "georef": "geo-registration is not built in this installation (needs pycolmap: "
    "pip install 'splatstudio[sfm]')",
    "train": "training is not built in this installation (needs torch and gsplat: "
    "pip install 'splatstudio[train]')",
    "export": "export is not built in this version yet (splat formats, mesh)",
}


def is_built(stage: str) -> bool:
    """True when `stage` can run in this version."""
    return STAGE_FUNCTIONS.get(stage) is not None
