"""movierec_operator: package."""
