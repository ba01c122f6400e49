"""sfm.sift_device: where SIFT and matching run (GPU only with a CUDA pycolmap), and what farm items
carry (the coordinator's choice, never the peer's)."""

import pytest

pycolmap = pytest.importorskip("pycolmap")

from splatstudio.config import SfmConfig, update_config  # noqa: E402
from splatstudio.errors import ConfigError, StageError  # noqa: E402
from splatstudio.pipeline import sfm  # noqa: E402


def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(pycolmap, "has_cuda", False, raising=False)
    assert sfm.sift_device(SfmConfig()) == "cpu"
    assert sfm.sift_device(update_config(SfmConfig(), {"sift_device": "cpu"})) == "cpu"
    with pytest.raises(StageError, match="sfm.sift_device=cuda .* no CUDA"):
        sfm.sift_device(update_config(SfmConfig(), {"sift_device": "cuda"}))
    assert sfm._item_resources(SfmConfig()) == {"MACHINE": 1}
    assert sfm._item_config(SfmConfig())["sift_device"] == "cpu"


def test_with_cuda_auto_is_the_gpu_and_farm_items_need_a_gpu_slot(monkeypatch):
    monkeypatch.setattr(pycolmap, "has_cuda", True, raising=False)
    assert sfm.sift_device(SfmConfig()) == "cuda"
    assert sfm.sift_device(update_config(SfmConfig(), {"sift_device": "cpu"})) == "cpu"
    assert sfm._item_resources(SfmConfig()) == {"MACHINE": 1, "GPU": 1}
    assert sfm._item_config(SfmConfig())["sift_device"] == "cuda"  # a CPU peer cannot take it


def test_an_unknown_device_is_refused_where_it_is_set():
    with pytest.raises(ConfigError, match="sfm.sift_device must be auto, cpu or cuda"):
        update_config(SfmConfig(), {"sift_device": "gpu"})
