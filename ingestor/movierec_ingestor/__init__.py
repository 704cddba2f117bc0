"""movierec_ingestor: event parsing, validation, storage and data quality for the movielog stream."""
