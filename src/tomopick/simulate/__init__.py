"""Synthetic cryo-ET tomograms with ground truth: scenes of particle maps in an ice slab (with membranes, gold
beads, filaments, clutter), imaged either in Fourier space (``imaging="fast"``) or through a tilt series with CTF,
dose-dependent noise and weighted back-projection (``imaging="full"``).

Public API
----------
SimulationConfig, SimulationResult, simulate_tomogram, build_scene, Template, bundled_template, shape_template
"""

from tomopick.simulate.config import CZII_COUNTS, CZII_TEMPLATES, SimulationConfig
from tomopick.simulate.context import SEGMENT_CLASSES, ContextConfig
from tomopick.simulate.core import SimulationResult, simulate_tomogram
from tomopick.simulate.scene import Scene, build_scene
from tomopick.simulate.templates_io import Template, bundled_template, render_rotated, resolve_template, shape_template

__all__ = [
    "CZII_COUNTS", "CZII_TEMPLATES", "ContextConfig", "SEGMENT_CLASSES", "Scene", "SimulationConfig", "SimulationResult", "Template", "build_scene",
    "bundled_template", "render_rotated", "resolve_template", "shape_template", "simulate_tomogram",
]
