"""Built-in dataset specs (TOML), shipped with the package as tabduel.datasets."""
