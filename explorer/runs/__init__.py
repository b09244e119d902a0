"""Run folders: prune runs, resumable work folders, EFTNAS runs and the shipped reference runs."""
