"""Real services for tests, benchmarks and developers: install, cache, start on 127.0.0.1, stop by PID."""
