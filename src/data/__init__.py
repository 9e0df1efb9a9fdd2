"""Data modules: one per data set, each exposing a DataSpec after setup()."""
