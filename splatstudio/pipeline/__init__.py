"""The pipeline: one module per stage (`run_<stage>(project, config, events)`) and the runner."""

from __future__ import annotations

STAGE_FUNCTIONS: dict[str, str] = {
    "ingest": "splatstudio.pipeline.ingest:run_ingest",
    "reproject": "splatstudio.pipeline.reproject:run_reproject",
    "sfm": "splatstudio.pipeline.sfm:run_sfm",
    "georef": "splatstudio.pipeline.georef:run_georef",
    "train": "splatstudio.pipeline.train:run_train",
    "export": "splatstudio.pipeline.export:run_export",
}
"""Where each stage's function lives ("module:function").

Workers import the function lazily, so the runner (and the GUI) never import heavy libraries.
"""
