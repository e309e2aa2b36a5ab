"""Paths inside a root resolved inside it, and copies that never follow a symlink: used by image/ and runtime/."""
