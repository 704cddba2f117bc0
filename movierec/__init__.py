"""movierec: package."""
