"""Model architectures, training recipes and the registry of models the benchmark can load."""
