"""Fault-injection, bad-input and load tests: `make reliability` runs them all."""
