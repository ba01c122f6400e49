"""Mouse-drag reading shared by the orbit viewer and the live training view."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent


def drag_step(event: QMouseEvent, last: QPointF) -> tuple[QPointF, float, float, bool, bool]:
    """One step of a mouse drag: (position, dx, dy, pan, orbit), dx/dy in widget pixels since
    `last`. Pan: right or middle button, or left with Shift; orbit: left button alone."""
    pos = event.position()
    buttons = event.buttons()
    pan = bool(buttons & (Qt.MouseButton.RightButton | Qt.MouseButton.MiddleButton)) or bool(
        buttons & Qt.MouseButton.LeftButton
        and event.modifiers() & Qt.KeyboardModifier.ShiftModifier
    )
    orbit = not pan and bool(buttons & Qt.MouseButton.LeftButton)
    return pos, pos.x() - last.x(), pos.y() - last.y(), pan, orbit
