"""movierec_ingestor: package."""
