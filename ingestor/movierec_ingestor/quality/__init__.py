"""Data-quality gate: schema checks, drift and poisoning detection before training (`gate.run_gate`)."""
