"""Speed comparisons: python -m benchmarks.run (nox -s bench)."""
