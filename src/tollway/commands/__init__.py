"""The `tollway` command's groups, one module per concern; `tollway.cli` assembles them."""
