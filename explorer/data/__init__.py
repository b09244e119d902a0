"""Tasks and their data: the task registry, local data files, the offline corpus."""
