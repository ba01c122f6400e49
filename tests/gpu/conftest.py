"""GPU tests: gsplat's CUDA kernels are built once, before any test or timing runs.

gsplat 1.5.3 compiles its kernels at first use (several minutes); without this session fixture
that compile would land inside the first test that renders, and inside its timings. The build
goes through :func:`splatstudio.render.gsplat_ext.build` (the same path as ``splatstudio doctor
--build-gsplat``), with its progress printed; its seconds are kept in ``GSPLAT_BUILD``.
"""

from __future__ import annotations

import time

import pytest
import torch

GSPLAT_BUILD: dict[str, float | str | None] = {}


@pytest.fixture(scope="session", autouse=True)
def gsplat_built():
    """Build (or load) gsplat's CUDA kernels before the GPU tests; fail them all if it cannot."""
    if not torch.cuda.is_available():
        return None  # the tests skip themselves
    from splatstudio.render import gsplat_ext

    t0 = time.monotonic()
    st = gsplat_ext.build(progress=lambda line: print(f"[gsplat build] {line}", flush=True))
    GSPLAT_BUILD.update(seconds=round(time.monotonic() - t0, 1), cache_dir=st.cache_dir)
    if not st.usable:
        pytest.fail(f"gsplat's CUDA kernels are not usable: {st.reason}")
    st = gsplat_ext.probe(load=True)
    if not st.usable:
        pytest.fail(f"gsplat's CUDA extension does not load in the test process: {st.reason}")
    return st
