"""A run on disk: its directory and lock, checkpoints (safe save, load and resume) and logs."""
