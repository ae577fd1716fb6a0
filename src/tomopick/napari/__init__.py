"""napari plugin (npe2): widgets to see, edit and pick; imported only by napari's entry point."""
