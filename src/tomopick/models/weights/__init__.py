"""Bundled model weights (data files; see MODEL_CARD.md)."""
