"""napari tests run without a display: Qt's offscreen platform (set before Qt is imported). The widgets only need
the viewer's layer list, so they get a :class:`napari.components.ViewerModel` (no OpenGL canvas)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
