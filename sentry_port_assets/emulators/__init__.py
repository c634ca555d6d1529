"""Test doubles that speak real HTTP: a Sentry API emulator and a Port API emulator (tests, benchmarks, demo)."""
