"""Membrane and organelle segmentation, instances, and per-pick context (pure stages: arrays in, arrays out).

* :mod:`tomopick.segment.instances` — class maps → lumen completion, instance ids, per-instance table, Dice and
  one-to-one instance matching;
* :mod:`tomopick.segment.context` — per-pick compartment, signed distance to the nearest membrane, on-membrane
  flag, orientation from the membrane normal; the ``--where`` filter language;
* :mod:`tomopick.segment.predict` — a segmentation network over a whole tomogram (the streamed sliding window of
  :mod:`tomopick.inference`);
* :mod:`tomopick.segment.sam2` — optional SAM2 backend (``pip install tomopick[sam2]``).

Class ids: :data:`SEGMENT_CLASSES` (0 background, 1 membrane, 2 lumen, 3 gold, 4 carbon).
"""

from tomopick.segment.context import CONTEXT_COLUMNS, ContextOptions, WhereError, parse_where, pick_context, where_mask
from tomopick.segment.instances import (
    CLASS_NAMES, SEGMENT_CLASSES, class_id, dice, enclosed_lumen, fill_lumen, instance_table, label_instances,
    match_instances,
)
from tomopick.segment.predict import SegmentOptions, Segmentation, is_segmentation_model, segment_tomogram

__all__ = [
    "CLASS_NAMES", "CONTEXT_COLUMNS", "ContextOptions", "SEGMENT_CLASSES", "SegmentOptions", "Segmentation",
    "WhereError", "class_id", "dice", "enclosed_lumen", "fill_lumen", "instance_table", "is_segmentation_model",
    "label_instances", "match_instances", "parse_where", "pick_context", "segment_tomogram", "where_mask",
]
