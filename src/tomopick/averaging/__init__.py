"""Subtomogram averaging for checking picks: extract, align, average half-sets, FSC."""
