"""Rolling a policy out without surprises: shadow mode (verdicts computed,
logged and counted, every message accepted) and replay of recorded traffic
through `decide` with the current policy."""
