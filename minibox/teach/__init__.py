"""Teaching tools built on the core: explain, dry-run, topology, trace, observe, doctor. Nothing in the core imports them."""
