"""Which torch device trains and renders, and which rasterizer runs there.

Choices (``--device``, ``SPLATSTUDIO_DEVICE``): ``auto``, ``cpu``, ``cuda``, ``mps``.

* NVIDIA CUDA: gsplat's CUDA kernels (the decision whether they can run, and their build,
  stay with :mod:`splatstudio.render.gsplat_ext` and the callers).
* AMD ROCm: torch's ROCm builds expose the GPU as device ``cuda`` (``torch.version.hip`` is
  set); gsplat has no ROCm kernels, so SplatStudio's differentiable torch rasterizer
  (:mod:`splatstudio.render.torch_impl`) runs there.
* Apple MPS: the same torch rasterizer on device ``mps`` (float32 only: MPS has no float64).
* CPU: the torch rasterizer.

``auto``: CUDA with gsplat when it can run, else a ROCm GPU, else MPS, else the CPU.
ROCm and MPS are untested in this project (no such machine in CI): the torch path uses only
standard torch operators, and :func:`torch_path_dtype_error` refuses what MPS cannot do.

Importing this module imports torch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "DEVICE_CHOICES",
    "Backends",
    "DeviceChoice",
    "choose_device",
    "torch_backends",
    "torch_path_dtype_error",
    "uses_gsplat",
]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
"""The device names the CLI, the GUI and ``SPLATSTUDIO_DEVICE`` accept."""


@dataclass(frozen=True)
class Backends:
    """What this torch can run on.

    Attributes:
        cuda: ``torch.cuda.is_available()`` (an NVIDIA GPU, or an AMD GPU under ROCm).
        hip: the torch build is ROCm (``torch.version.hip`` set): ``cuda`` is an AMD GPU.
        mps: ``torch.backends.mps.is_available()`` (Apple silicon, macOS 12.3+).
    """

    cuda: bool
    hip: bool
    mps: bool


def torch_backends() -> Backends:
    """The :class:`Backends` of the torch installed here."""
    mps = getattr(torch.backends, "mps", None)
    return Backends(
        cuda=bool(torch.cuda.is_available()),
        hip=getattr(torch.version, "hip", None) is not None,
        mps=bool(mps is not None and mps.is_available()),
    )


@dataclass(frozen=True)
class DeviceChoice:
    """Outcome of :func:`choose_device`.

    Attributes:
        device: torch device type, "cpu", "cuda" or "mps".
        rasterizer: "gsplat" (NVIDIA CUDA) or "torch" (everything else).
        warning: why ``auto`` did not take an NVIDIA GPU it found (None otherwise).
    """

    device: str
    rasterizer: str
    warning: str | None = None


def choose_device(want: str, backends: Backends, gsplat_reason: str | None = None) -> DeviceChoice:
    """Resolve a device name to a device and rasterizer.

    Args:
        want: one of :data:`DEVICE_CHOICES` (case-insensitive; "" means auto).
        backends: what torch can run on (:func:`torch_backends`).
        gsplat_reason: None when gsplat's CUDA rasterizer can run on the NVIDIA GPU, else
            why it cannot (only consulted for a non-ROCm CUDA device).

    Returns:
        the :class:`DeviceChoice`.

    Raises:
        ValueError: an unknown name, or a device asked for that cannot be used here (the
            message says what is missing).
    """
    w = (want or "auto").lower()
    if w not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {want!r} ({', '.join(DEVICE_CHOICES)})")
    if w == "cpu":
        return DeviceChoice("cpu", "torch")
    if w == "mps":
        if not backends.mps:
            raise ValueError("device mps was asked for, but this torch has no usable MPS device "
                             "(needs Apple silicon, macOS 12.3 or newer and a torch built with "
                             "MPS)")
        return DeviceChoice("mps", "torch")
    if backends.cuda and backends.hip:  # ROCm: the GPU is "cuda", gsplat cannot run on it
        return DeviceChoice("cuda", "torch")
    if w == "cuda":
        if not backends.cuda:
            raise ValueError("device cuda was asked for, but torch sees no CUDA GPU")
        if gsplat_reason is not None:
            raise ValueError(f"device cuda was asked for, but gsplat's CUDA rasterizer cannot "
                             f"run: {gsplat_reason}")
        return DeviceChoice("cuda", "gsplat")
    # auto
    if backends.cuda:
        if gsplat_reason is None:
            return DeviceChoice("cuda", "gsplat")
        fallback = "mps" if backends.mps else "cpu"
        return DeviceChoice(fallback, "torch", f"device auto: using the {fallback.upper()}: "
                            f"gsplat's CUDA rasterizer cannot run: {gsplat_reason}")
    if backends.mps:
        return DeviceChoice("mps", "torch")
    return DeviceChoice("cpu", "torch")


def uses_gsplat(device: torch.device, hip: bool | None = None) -> bool:
    """True when ``rasterize(backend="auto")`` sends tensors on `device` to gsplat: an
    NVIDIA CUDA device (not a ROCm one; `hip` defaults to this torch's build)."""
    if hip is None:
        hip = getattr(torch.version, "hip", None) is not None
    return device.type == "cuda" and not hip


def torch_path_dtype_error(device_type: str, dtypes: set[torch.dtype]) -> str | None:
    """Why the torch rasterizer cannot take inputs of `dtypes` on `device_type`, or None.

    Rules: all inputs one dtype, float32 or float64 (half precision would lose the 1/255
    alpha threshold and the transmittance products); float64 not on MPS (Apple's GPUs have
    no float64).
    """
    if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64}:
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes))
        return f"the torch path needs all inputs in float32 or all in float64, got {names}"
    if device_type == "mps" and torch.float64 in dtypes:
        return "MPS has no float64: pass float32 inputs on an mps device"
    return None
