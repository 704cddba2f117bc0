"""Where lines come from: a growing local file or a Kafka topic, with offsets kept in the store."""

from movierec_ingestor.sources.base import Source

__all__ = ["Source"]
