"""Reference models: one architecture per module."""
