"""The OpenGL splat renderer widget (OpenGL 3.3 core, PyOpenGL calls in a QOpenGLWidget).

Each gaussian is one instanced screen-space quad; the vertex shader projects its 3D covariance
to a 2D one (EWA, as gsplat and the WebGL viewers do) and the fragment shader evaluates the
gaussian falloff. Quads are alpha-blended back to front; the order comes from a NumPy argsort of
camera depths, redone when the camera has turned or moved enough (the static per-gaussian data
stays in a float texture, only the ``[N] uint32`` index buffer is re-uploaded).

Colours are view-dependent: the vertex shader evaluates the file's spherical harmonics (degree
up to 3, coefficients in a second, half-float texture uploaded only for SH degree >= 1) along
the direction camera centre -> mean, as gsplat does; :meth:`SplatGLWidget.set_max_sh_degree`
caps the bands evaluated (0 = the DC colour only).

Controls: left drag orbit, right or middle drag (or shift + left) pan, wheel zoom,
W/A/S/D fly forward/left/back/right, Q/E down/up, F frame the splats, R reset the view,
H cycle the SH degree cap (3, 2, 1, 0).
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np
from OpenGL import GL
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QSurfaceFormat, QWheelEvent
from PySide6.QtOpenGLWidgets import QOpenGLWidget
from PySide6.QtWidgets import QWidget

from ...render.camera import PinholeCamera
from ...resources import read_text
from ...splats.model import Splats
from .camera import OrbitCamera
from .gaussians import PackedGaussians, back_to_front, pack_gaussians
from .mouse import drag_step

BACKGROUND = (0.08, 0.09, 0.11)
#: Highest SH degree the shader evaluates (3DGS / INRIA PLY files go up to 3).
MAX_SH_DEGREE = 3
#: Re-sort when the view direction turned by more than ~0.8 degrees ...
RESORT_COS = 0.9999
#: ... or the eye moved by more than this fraction of the eye-target distance.
RESORT_MOVE = 0.01


def surface_format() -> QSurfaceFormat:
    """The format the viewer asks for: OpenGL 3.3 core, 8-bit RGBA, no depth buffer."""
    fmt = QSurfaceFormat()
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setAlphaBufferSize(8)
    fmt.setSwapInterval(0)
    return fmt


def _compile(kind: int, source: str, name: str) -> int:
    shader = GL.glCreateShader(kind)
    GL.glShaderSource(shader, source)
    GL.glCompileShader(shader)
    if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
        log = GL.glGetShaderInfoLog(shader)
        raise RuntimeError(f"{name}: shader compile failed: {log.decode(errors='replace')}")
    return shader


def _link(vs: int, fs: int) -> int:
    prog = GL.glCreateProgram()
    GL.glAttachShader(prog, vs)
    GL.glAttachShader(prog, fs)
    GL.glLinkProgram(prog)
    if not GL.glGetProgramiv(prog, GL.GL_LINK_STATUS):
        log = GL.glGetProgramInfoLog(prog)
        raise RuntimeError(f"splat shader link failed: {log.decode(errors='replace')}")
    GL.glDeleteShader(vs)
    GL.glDeleteShader(fs)
    return prog


class SplatGLWidget(QOpenGLWidget):
    """Draws a :class:`~splatstudio.splats.model.Splats` and lets the user move around it.

    Signals:
        loaded(int): gaussians were set (their count).
        shDegreeChanged(int): the SH degree cap changed (0..3).
        frameRendered(float): a frame was drawn (CPU time of paintGL in milliseconds; the
            time until it is on screen is ``last_frame_ms`` after ``frameSwapped``).
        glError(str): OpenGL could not be initialised or a shader failed (message).
    """

    loaded = Signal(int)
    frameRendered = Signal(float)
    glError = Signal(str)
    #: The SH degree cap changed (the new cap, 0..3).
    shDegreeChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFormat(surface_format())
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 240)
        self.camera = OrbitCamera()
        self.packed: PackedGaussians | None = None
        #: the scene shown (as loaded; the workbench's edits never modify it)
        self.splats: Splats | None = None
        self.gl_info: dict[str, str] = {}
        self.error: str | None = None
        self.sort_count = 0
        self.last_frame_ms = 0.0
        self._frame_times: list[float] = []
        self._paint_start = 0.0
        self.frameSwapped.connect(self._on_swapped)
        self._prog = 0
        self._vao = 0
        self._quad_vbo = 0
        self._index_vbo = 0
        self._tex = 0
        self._sh_tex = 0
        self.max_sh_degree = MAX_SH_DEGREE
        self._sh_unavailable = False
        self._max_texture_size = 16384
        self._uniforms: dict[str, int] = {}
        self._upload_pending = False
        self._order: np.ndarray | None = None
        self._sorted_eye: np.ndarray | None = None
        self._sorted_fwd: np.ndarray | None = None
        self._mouse: QPointF | None = None
        self._home: tuple[np.ndarray, float] | None = None
        #: [N] bool, the gaussians drawn (None: all); see set_edit_state
        self.alive: np.ndarray | None = None
        self._draw_n = 0
        self._base_dirty = False
        #: the active tool of the viewer's workbench (gui.viewer.tools), or None: it gets the
        #: left-button presses, moves and releases (``press(pos) -> bool``, ``move(pos)``,
        #: ``release(pos)``, positions in widget pixels) before orbiting does
        self.mouse_tool = None
        self._tool_drag = False

    # -- data ---------------------------------------------------------------------------
    def set_splats(self, splats: Splats, *, frame: bool = True) -> None:
        """Show `splats` (replacing what was shown); frame the camera on them."""
        self.packed = pack_gaussians(splats)
        self.splats = splats
        self.alive = None
        self._sh_unavailable = False
        self._upload_pending = True
        self._order = None
        self._sorted_eye = None
        if frame:
            self._home = (self.packed.center, self.packed.radius)
            self.reset_view()
        self.loaded.emit(self.packed.n)
        self.update()

    def set_edit_state(self, alive: np.ndarray | None, selected: np.ndarray | None) -> None:
        """Draw only the `alive` gaussians (``[N] bool``, None = all) and tint the `selected`
        ones (``[N] bool`` or None) orange: the selected flag goes into the spare channel of
        the base texture (texel 3, w), re-uploaded before the next frame; the alive mask
        filters the back-to-front index buffer (re-sorted before the next frame)."""
        if self.packed is None:
            return
        n = self.packed.n
        flags = self.packed.texture.reshape(-1, 4, 4)[:n, 3, 3]
        flags[:] = 0.0 if selected is None else np.asarray(selected, dtype=np.float32)
        self.alive = None if alive is None else np.asarray(alive, dtype=bool)
        self._base_dirty = True
        self._sorted_eye = None
        self.update()

    def view_camera(self) -> PinholeCamera:
        """The :class:`~splatstudio.render.camera.PinholeCamera` of the view in widget
        (logical) pixels, the frame of mouse positions; principal point at the centre, as the
        shader projects."""
        return self.camera.camera(max(1, self.width()), max(1, self.height()))

    def load(self, path: str | Path) -> int:
        """Load a .ply / .compressed.ply / .splat / .spz / .sog / splat .glb file and show it
        (SPZ and glTF axes converted to the PLY convention); returns N.

        Raises:
            FileNotFoundError, ValueError: as :func:`splatstudio.splats.io.load_splats`.
        """
        from ...splats.io import load_splats

        splats = load_splats(path)
        self.set_splats(splats)
        return splats.n

    @property
    def sh_degree(self) -> int:
        """SH degree drawn now: the file's degree capped by :attr:`max_sh_degree` (0 when its
        SH texture would exceed the GPU's largest texture, see :meth:`_upload`)."""
        if self.packed is None or self._sh_unavailable:
            return 0
        return min(self.packed.sh_degree, self.max_sh_degree)

    def set_max_sh_degree(self, degree: int) -> None:
        """Evaluate SH bands up to `degree` (clipped to 0..3) at most; 0 draws the DC colour
        ``0.5 + SH_C0 * sh0`` only, as the viewer did before it evaluated SH. Repaints."""
        degree = int(np.clip(degree, 0, MAX_SH_DEGREE))
        if degree != self.max_sh_degree:
            self.max_sh_degree = degree
            self.shDegreeChanged.emit(degree)
            self.update()

    def reset_view(self) -> None:
        """Oblique view from above, framing the splats."""
        self.camera.yaw_deg, self.camera.pitch_deg = -60.0, 25.0
        if self._home is not None:
            self.camera.frame(*self._home)
        self.update()

    def frame_all(self) -> None:
        """Keep the direction, frame the splats again."""
        if self._home is not None:
            self.camera.frame(*self._home)
        self.update()

    def set_up_axis(self, up: tuple[float, float, float]) -> None:
        """Change the world up axis and reset the view."""
        self.camera.set_up(up)
        self.reset_view()

    def fps(self) -> float:
        """Frames per second while frames follow each other (the user moves the camera);
        0 when idle or before a few frames."""
        t = self._frame_times[-6:]
        if len(t) < 3 or time.perf_counter() - t[-1] > 1.0 or np.diff(t).max() > 1.0:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def _on_swapped(self) -> None:
        # paintGL start -> frame on screen: drawing included (GL runs asynchronously).
        if self._paint_start:
            self.last_frame_ms = (time.perf_counter() - self._paint_start) * 1000.0
            self._paint_start = 0.0

    # -- OpenGL -------------------------------------------------------------------------
    def initializeGL(self) -> None:  # noqa: N802 - Qt override
        try:
            self.gl_info = {
                "version": GL.glGetString(GL.GL_VERSION).decode(),
                "renderer": GL.glGetString(GL.GL_RENDERER).decode(),
                "vendor": GL.glGetString(GL.GL_VENDOR).decode(),
            }
            vs = _compile(GL.GL_VERTEX_SHADER, read_text("shaders", "splat.vert"), "splat.vert")
            fs = _compile(GL.GL_FRAGMENT_SHADER, read_text("shaders", "splat.frag"), "splat.frag")
            self._prog = _link(vs, fs)
            self._uniforms = {
                name: GL.glGetUniformLocation(self._prog, name)
                for name in ("u_data", "u_view", "u_focal", "u_viewport", "u_near",
                             "u_antialiased", "u_sh", "u_sh_degree", "u_sh_texels",
                             "u_sh_per_row", "u_cam_pos")
            }
            self._vao = GL.glGenVertexArrays(1)
            GL.glBindVertexArray(self._vao)
            self._quad_vbo = GL.glGenBuffers(1)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._quad_vbo)
            quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype=np.float32)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, quad.nbytes, quad, GL.GL_STATIC_DRAW)
            GL.glEnableVertexAttribArray(0)
            GL.glVertexAttribPointer(0, 2, GL.GL_FLOAT, GL.GL_FALSE, 0, ctypes.c_void_p(0))
            self._index_vbo = GL.glGenBuffers(1)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._index_vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, 4, None, GL.GL_DYNAMIC_DRAW)
            GL.glEnableVertexAttribArray(1)
            GL.glVertexAttribIPointer(1, 1, GL.GL_UNSIGNED_INT, 0, ctypes.c_void_p(0))
            GL.glVertexAttribDivisor(1, 1)
            GL.glBindVertexArray(0)
            self._tex, self._sh_tex = (int(t) for t in GL.glGenTextures(2))
            for tex in (self._tex, self._sh_tex):
                GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
                for p, v in (
                    (GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST),
                    (GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST),
                    (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE),
                    (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE),
                ):
                    GL.glTexParameteri(GL.GL_TEXTURE_2D, p, v)
            self._max_texture_size = int(GL.glGetIntegerv(GL.GL_MAX_TEXTURE_SIZE))
            self._upload_pending = self.packed is not None
            self.error = None
        except Exception as e:  # noqa: BLE001 - reported in the page, never fatal
            self.error = f"OpenGL 3.3 initialisation failed: {e}"
            self.glError.emit(self.error)

    def _upload(self) -> None:
        assert self.packed is not None
        tex = self.packed.texture
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._tex)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexImage2D(
            GL.GL_TEXTURE_2D, 0, GL.GL_RGBA32F, tex.shape[1], tex.shape[0], 0,
            GL.GL_RGBA, GL.GL_FLOAT, np.ascontiguousarray(tex),
        )
        # SH bands 1..3 in half floats; SH0 files get a 1x1 placeholder (nothing read). A
        # 3072-texel row holds 256 gaussians at SH3: 16384 rows (llvmpipe, most desktop GPUs)
        # are 4.2M gaussians; beyond the GPU's limit the base colours are shown instead.
        sh = self.packed.sh_texture
        if sh is not None and sh.shape[0] > self._max_texture_size:
            self._sh_unavailable = True
            self.glError.emit(
                f"{self.packed.n:,} gaussians with SH degree {self.packed.sh_degree} exceed "
                f"this GPU's texture size ({self._max_texture_size}): base colours only"
            )
        if sh is None or self._sh_unavailable:
            sh = np.zeros((1, 1, 4), dtype=np.float16)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._sh_tex)
        GL.glTexImage2D(
            GL.GL_TEXTURE_2D, 0, GL.GL_RGBA16F, sh.shape[1], sh.shape[0], 0,
            GL.GL_RGBA, GL.GL_HALF_FLOAT, np.ascontiguousarray(sh, dtype=np.float16),
        )
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._index_vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, 4 * self.packed.n, None, GL.GL_DYNAMIC_DRAW)
        self._upload_pending = False
        self._sorted_eye = None

    def _maybe_sort(self, viewmat: np.ndarray) -> None:
        assert self.packed is not None
        eye = self.camera.eye()
        fwd = viewmat[2, :3]
        if self._sorted_eye is not None and self._sorted_fwd is not None:
            turned = float(fwd @ self._sorted_fwd) < RESORT_COS
            moved = np.linalg.norm(eye - self._sorted_eye) > RESORT_MOVE * self.camera.distance
            if not turned and not moved:
                return
        order = back_to_front(self.packed.means, viewmat)
        if self.alive is not None and len(self.alive) == len(order):
            order = np.ascontiguousarray(order[self.alive[order]])
        self._draw_n = len(order)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._index_vbo)
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, order.nbytes, order)
        self._order = order
        self._sorted_eye, self._sorted_fwd = eye, fwd.copy()
        self.sort_count += 1

    def paintGL(self) -> None:  # noqa: N802 - Qt override
        t0 = self._paint_start = time.perf_counter()
        GL.glClearColor(*BACKGROUND, 1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT)
        if self.error or not self._prog or self.packed is None or self.packed.n == 0:
            return
        if self._upload_pending:
            self._upload()
        elif self._base_dirty:
            tex = self.packed.texture
            GL.glBindTexture(GL.GL_TEXTURE_2D, self._tex)
            GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, tex.shape[1], tex.shape[0],
                               GL.GL_RGBA, GL.GL_FLOAT, np.ascontiguousarray(tex))
        self._base_dirty = False
        dpr = self.devicePixelRatioF()
        w, h = max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr))
        cam = self.camera.camera(w, h)  # device pixels
        viewmat = cam.viewmat
        self._maybe_sort(viewmat)
        f = float(cam.K[1, 1])
        GL.glViewport(0, 0, w, h)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glUseProgram(self._prog)
        u = self._uniforms
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._tex)
        GL.glUniform1i(u["u_data"], 0)
        # GLSL matrices are column-major: pass the row-major NumPy matrix transposed.
        GL.glUniformMatrix4fv(u["u_view"], 1, GL.GL_TRUE, viewmat.astype(np.float32))
        GL.glUniform2f(u["u_focal"], f, f)
        GL.glUniform2f(u["u_viewport"], float(w), float(h))
        GL.glUniform1f(u["u_near"], float(self.camera.near))
        GL.glUniform1i(u["u_antialiased"], int(self.packed.antialiased))
        GL.glActiveTexture(GL.GL_TEXTURE1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._sh_tex)
        GL.glUniform1i(u["u_sh"], 1)
        GL.glUniform1i(u["u_sh_degree"], self.sh_degree)
        GL.glUniform1i(u["u_sh_texels"], max(1, self.packed.sh_texels))
        GL.glUniform1i(u["u_sh_per_row"], max(1, self.packed.sh_per_row))
        GL.glUniform3f(u["u_cam_pos"], *(float(v) for v in cam.centre))  # world units
        GL.glBindVertexArray(self._vao)
        if self._draw_n:
            GL.glDrawArraysInstanced(GL.GL_TRIANGLE_STRIP, 0, 4, self._draw_n)
        GL.glBindVertexArray(0)
        GL.glUseProgram(0)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glDisable(GL.GL_BLEND)
        now = time.perf_counter()
        self.last_frame_ms = (now - t0) * 1000.0
        self._frame_times = [*self._frame_times[-29:], now]
        self.frameRendered.emit(self.last_frame_ms)

    # -- interaction --------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self.setFocus()
        tool = self.mouse_tool
        if (tool is not None and event.button() == Qt.MouseButton.LeftButton
                and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier
                and tool.press(event.position())):
            self._tool_drag = True
            return
        self._mouse = event.position()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._tool_drag and self.mouse_tool is not None:
            self.mouse_tool.release(event.position())
        self._tool_drag = False
        self._mouse = None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._tool_drag and self.mouse_tool is not None:
            self.mouse_tool.move(event.position())
            return
        if self._mouse is None:
            return
        self._mouse, dx, dy, pan, orbit = drag_step(event, self._mouse)
        if pan:
            self.camera.pan(dx, dy, max(1, self.height()))
        elif orbit:
            self.camera.orbit(-0.4 * dx, 0.4 * dy)
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120.0
        self.camera.zoom(0.85**steps)
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        step = 0.05 * max(self.camera.distance, 1e-6)
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            step *= 4
        k = Qt.Key
        moves = {
            k.Key_W: (step, 0, 0), k.Key_S: (-step, 0, 0), k.Key_A: (0, -step, 0),
            k.Key_D: (0, step, 0), k.Key_E: (0, 0, step), k.Key_Q: (0, 0, -step),
            k.Key_Up: (step, 0, 0), k.Key_Down: (-step, 0, 0), k.Key_Left: (0, -step, 0),
            k.Key_Right: (0, step, 0),
        }
        key = event.key()
        if key in moves:
            self.camera.fly(*moves[key])
        elif key == k.Key_F:
            self.frame_all()
        elif key == k.Key_R:
            self.reset_view()
        elif key == k.Key_H:
            self.set_max_sh_degree((self.max_sh_degree - 1) % (MAX_SH_DEGREE + 1))
            return
        elif key in (k.Key_Plus, k.Key_Equal):
            self.camera.zoom(0.85)
        elif key == k.Key_Minus:
            self.camera.zoom(1 / 0.85)
        else:
            super().keyPressEvent(event)
            return
        self.update()
