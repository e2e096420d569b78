"""Activities: everything that reads or changes the world, as methods on classes holding their clients."""
