"""Speed and learning benchmarks; each script prints its figures (run them as files)."""
