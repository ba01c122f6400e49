"""An orbit / fly camera for the splat viewer (no Qt, no OpenGL).

World frame: the splats' own (metres, z-up ENU for SplatStudio scenes; pick the up axis for
third-party files). The view matrix is world-to-camera in the OpenCV convention (x right,
y down, z forward), the same as :func:`splatstudio.render.camera.look_at` and gsplat.
:class:`OrbitCamera` is the controller's state (target, distance, yaw, pitch); what it hands
to the renderer, picking and selection is a :class:`~splatstudio.render.camera.PinholeCamera`
(:meth:`OrbitCamera.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...render.camera import PinholeCamera, horizontal_basis, look_at

#: Up axes a user can choose, by name.
UP_AXES: dict[str, tuple[float, float, float]] = {
    "+Z": (0.0, 0.0, 1.0),
    "-Y": (0.0, -1.0, 0.0),
    "+Y": (0.0, 1.0, 0.0),
}


@dataclass
class OrbitCamera:
    """A camera orbiting `target` at `distance`.

    Attributes:
        target: ``[3]`` orbit centre, world units.
        distance: eye-target distance, world units (> 0).
        yaw_deg: azimuth about `up`, degrees; pitch_deg: elevation above the horizontal
            plane, degrees, kept in (-89, 89).
        up: ``[3]`` world up (unit).
        fov_deg: vertical field of view, degrees.
        near: near clipping distance, world units (gaussians closer are not drawn).
    """

    target: np.ndarray = field(default_factory=lambda: np.zeros(3))
    distance: float = 5.0
    yaw_deg: float = -60.0
    pitch_deg: float = 25.0
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    fov_deg: float = 50.0
    near: float = 0.01

    def eye(self) -> np.ndarray:
        """Camera centre ``[3]`` in world units."""
        return self.target + self.distance * self._dir()

    def viewmat(self) -> np.ndarray:
        """``[4, 4]`` world-to-camera matrix (OpenCV: x right, y down, z forward)."""
        return look_at(self.eye(), self.target, self.up)

    def focal(self, height_px: int) -> float:
        """Focal length in pixels for an image `height_px` tall (square pixels)."""
        return 0.5 * height_px / math.tan(math.radians(self.fov_deg) / 2)

    def camera(self, width: int, height: int) -> PinholeCamera:
        """The pinhole camera of this view for an image of `width` x `height` pixels: the
        :meth:`viewmat`, square pixels of :meth:`focal` for `height` (the field of view is
        vertical), principal point at the image centre -- what the viewer's shader draws and
        what picking, selection and the renderer take.

        Raises:
            ValueError: a size that is not positive.
        """
        f = self.focal(height)
        K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        return PinholeCamera(self.viewmat(), K, width, height)

    def orbit(self, dyaw_deg: float, dpitch_deg: float) -> None:
        """Turn about the target (yaw about `up`, pitch clamped to +-89 degrees)."""
        self.yaw_deg = (self.yaw_deg + dyaw_deg) % 360.0
        self.pitch_deg = float(np.clip(self.pitch_deg + dpitch_deg, -89.0, 89.0))

    def pan(self, dx_px: float, dy_px: float, height_px: int) -> None:
        """Move the target with the mouse: the point under the cursor follows it."""
        vm = self.viewmat()
        right, down = vm[0, :3], vm[1, :3]
        s = self.distance / self.focal(height_px)
        self.target = self.target - s * (dx_px * right + dy_px * down)

    def zoom(self, factor: float) -> None:
        """Multiply the distance by `factor` (< 1 moves closer)."""
        self.distance = float(np.clip(self.distance * factor, 1e-4, 1e7))

    def fly(self, forward: float, right: float, upward: float) -> None:
        """Move eye and target together, in world units along view forward, right and up."""
        vm = self.viewmat()
        move = forward * vm[2, :3] + right * vm[0, :3] + upward * self.up
        self.target = self.target + move

    def frame(self, center: np.ndarray, radius: float) -> None:
        """Look at a sphere (`center`, `radius` in world units) so that it fills the view."""
        self.target = np.asarray(center, dtype=np.float64).copy()
        r = max(float(radius), 1e-6)
        self.distance = 1.1 * r / math.sin(math.radians(self.fov_deg) / 2)
        self.near = max(1e-4 * self.distance, 1e-6)

    def look_from(self, eye: np.ndarray, forward: np.ndarray, distance: float) -> None:
        """Stand at `eye` ``[3]`` (world units) looking along `forward` ``[3]`` (any length,
        not parallel to `up`): the orbit target goes `distance` ahead, so orbiting turns
        about a point in front of the viewer. Pitch is clamped to +-89 degrees."""
        f = np.asarray(forward, dtype=np.float64)
        f = f / np.linalg.norm(f)
        d = -f  # eye = target + distance * d
        h1, h2 = horizontal_basis(self.up)
        self.pitch_deg = float(np.clip(math.degrees(math.asin(np.clip(d @ self.up, -1, 1))),
                                       -89.0, 89.0))
        self.yaw_deg = math.degrees(math.atan2(float(d @ h2), float(d @ h1))) % 360.0
        self.distance = max(float(distance), 1e-4)
        self.target = np.asarray(eye, dtype=np.float64) - self.distance * self._dir()
        self.near = max(0.01 * self.distance, 1e-6)

    def _dir(self) -> np.ndarray:
        h1, h2 = horizontal_basis(self.up)
        y, p = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        return math.cos(p) * (math.cos(y) * h1 + math.sin(y) * h2) + math.sin(p) * self.up

    def set_up(self, up: tuple[float, float, float] | np.ndarray) -> None:
        """Change the world up axis (keeps target and distance)."""
        u = np.asarray(up, dtype=np.float64)
        self.up = u / np.linalg.norm(u)
