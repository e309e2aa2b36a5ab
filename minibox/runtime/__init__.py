"""Effectful process and kernel work: namespaces, mounts, the shim, exec, cgroups."""
