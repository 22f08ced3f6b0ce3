"""ipywidgets viewers for the notebooks, one module per viewer."""
