"""Dataset definitions: file layouts, class names, palettes and label tables."""
