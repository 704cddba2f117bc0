"""The public entry point: per-user track assignment (LaunchDarkly) and forwarding with fallback."""
