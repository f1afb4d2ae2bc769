"""Benchmarks, run by hand (`make bench`): ratios side by side in one run, never assertions."""
