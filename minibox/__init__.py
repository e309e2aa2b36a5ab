"""minibox: a small, real container runtime that shows what `docker run` does to the kernel."""
