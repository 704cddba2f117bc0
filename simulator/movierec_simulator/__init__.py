"""movierec_simulator: package."""
