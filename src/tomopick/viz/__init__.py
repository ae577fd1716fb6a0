"""Pictures of tomograms and picks: slabs, overlays, galleries, and the self-contained HTML report."""
