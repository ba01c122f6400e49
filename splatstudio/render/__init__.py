"""Gaussian-splat rendering: ``rasterize`` (gsplat semantics; CUDA via gsplat, CPU via a
differentiable PyTorch implementation), spherical harmonics and camera helpers.

Importing this package imports torch and NumPy only (never gsplat or Qt).
:mod:`splatstudio.render.gsplat_ext` (not imported here) probes and builds gsplat's CUDA
extension; :func:`splatstudio.render.image.resolve_device` uses it to choose the device.

Conventions: view matrices are world-to-camera in the OpenCV frame (x right, y down,
z forward); intrinsics are in pixels with pixel centres at +0.5; quaternions are wxyz;
scales and opacities are already activated (linear / sigmoid), as in gsplat 1.5.3.
"""

from .camera import frame_points, intrinsics_from_fov, look_at
from .rasterize import rasterize
from .sh import eval_sh, num_sh_bases, rgb_to_sh, sh_basis, sh_to_rgb
from .torch_impl import RasterConfig, project_gaussians, quat_to_rotmat, rasterize_torch

__all__ = [
    "RasterConfig",
    "eval_sh",
    "frame_points",
    "intrinsics_from_fov",
    "look_at",
    "num_sh_bases",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize",
    "rasterize_torch",
    "rgb_to_sh",
    "sh_basis",
    "sh_to_rgb",
]
