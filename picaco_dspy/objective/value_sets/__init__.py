"""Built-in value compositions, as YAML data files."""
