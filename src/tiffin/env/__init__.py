"""The environment layer: capture what a model imports, lock it, build it."""
