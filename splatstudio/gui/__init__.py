"""The desktop application (PySide6). The only package that imports PySide6, pyqtgraph or OpenGL.

Layout:

* :mod:`.app` -- ``main(argv)``: the QApplication, style sheet, error dialog, main window.
* :mod:`.store` -- :class:`AppSettings`: preferences and the recent-project list (QSettings).
* :mod:`.model` -- :class:`ProjectModel`: the open project's stage states, fed by the
  :class:`PipelineThread` that drives :class:`~splatstudio.pipeline.runner.PipelineRunner`.
* Views that subscribe to the model's signals: :mod:`.stage_panel`, :mod:`.project_browser`,
  :mod:`.capture_map`, :mod:`.viewer` (OpenGL splat renderer), :mod:`.dialogs`.

Importing :mod:`splatstudio.gui` itself imports nothing heavy; the submodules import Qt.
"""
