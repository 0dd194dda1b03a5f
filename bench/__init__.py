"""Murmur benchmarks: measured and reported, never asserted in tests (see bench/README.md)."""
