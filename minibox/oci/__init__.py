"""minibox-oci: runc's command line over minibox's engine, for Docker, Podman, containerd and the OCI conformance suite."""
