"""Benchmarks, run by hand (`make bench`): numbers to read side by side, never assertions."""
