"""Images: references, configs, the layer store, and getting images in (pull, load, import)."""

# The layer format's two marker names (OCI image spec, "Whiteouts"), here so that reading
# them (facts.layer_file, on every run) does not import the unpacker and its hashlib/tarfile.
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
