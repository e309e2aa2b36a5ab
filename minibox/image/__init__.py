"""Images: references, configs, the layer store, and getting images in (pull, load, import)."""
