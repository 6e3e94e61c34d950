"""Shared helpers for integration tests: real things (brokers, processes), no fakes."""
