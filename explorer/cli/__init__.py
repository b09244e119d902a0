"""``python -m explorer``: the command line."""
