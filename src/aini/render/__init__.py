"""Pure renderers: (config, catalog, secrets) -> the files of the deploy bundle."""
