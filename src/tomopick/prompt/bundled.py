"""The bundled promptable model (trained on simulated data only).

``BUNDLED`` names the checkpoint shipped inside the package (``tomopick/prompt/weights/``) and its SHA-256; it is
``None`` while no model good enough to ship exists — then ``tomopick pick --prompt`` needs ``--model``. Train one
with ``tomopick prompt train configs/prompt-10A.yaml`` (see ``docs/prompt.md``).
"""

from __future__ import annotations

from pathlib import Path

from tomopick.errors import TomopickError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: ``{"file": <name in WEIGHTS_DIR>, "sha256": <hex digest>}`` or ``None`` (no bundled model yet).
BUNDLED: dict[str, str] | None = None


def bundled_checkpoint() -> tuple[Path, str]:
    """Path and SHA-256 of the bundled promptable checkpoint; one-line error when there is none."""
    if BUNDLED is None:
        raise TomopickError("this tomopick ships no promptable model yet; pass --model CHECKPOINT "
                            "(train one with `tomopick prompt train configs/prompt-10A.yaml`, see docs/prompt.md)")
    path = WEIGHTS_DIR / BUNDLED["file"]
    if not path.is_file():
        raise TomopickError("bundled promptable model is missing from the installation", path)
    return path, BUNDLED["sha256"]
