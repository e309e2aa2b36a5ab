"""Pure planning: what to build, computed without I/O or root, so all of it is unit-tested."""
