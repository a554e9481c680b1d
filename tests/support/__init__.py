"""Test support shared by tests and benchmarks (never imported by the runtime package)."""
