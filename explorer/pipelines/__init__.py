"""The methods end to end: NASH (and its baselines) and EFTNAS, each one function that the CLI, the
backend and the tests call."""
