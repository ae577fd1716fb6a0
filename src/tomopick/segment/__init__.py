"""Membrane and organelle segmentation: networks' label maps → classes, instances, per-pick context."""
