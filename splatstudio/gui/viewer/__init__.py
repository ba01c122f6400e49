"""Interactive OpenGL 3.3 splat viewer: instanced screen-space quads, CPU depth sort.

* :mod:`.camera` -- :class:`OrbitCamera` (orbit, pan, zoom, fly), pure NumPy.
* :mod:`.gaussians` -- :func:`pack_gaussians` (3D covariances, colours -> one float texture)
  and :func:`back_to_front`.
* :mod:`.gl_widget` -- :class:`SplatGLWidget`, the QOpenGLWidget that draws them.
* :mod:`.page` -- :class:`ViewerPage`, the widget with a tool bar around it.
"""
