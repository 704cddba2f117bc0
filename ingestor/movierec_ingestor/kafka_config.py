"""Kafka client security (TLS, SASL) for every client: ingestor, simulator, provenance producer.

One set of variables, prefix `MOVIEREC_KAFKA_`, so a cluster's components all speak to the
broker the same way: `SECURITY_PROTOCOL` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
`SASL_MECHANISM` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), `SASL_USERNAME`, `SASL_PASSWORD`,
`SSL_CAFILE`, `SSL_CERTFILE`, `SSL_KEYFILE`, `SSL_CHECK_HOSTNAME`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseSettings):
    """How to authenticate to and encrypt traffic with the broker; PLAINTEXT by default."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_KAFKA_", extra="ignore")

    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs MOVIEREC_KAFKA_SASL_USERNAME "
                "and MOVIEREC_KAFKA_SASL_PASSWORD"
            )
        return self

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer / admin client (the producers)."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, key):
                    config[key] = getattr(self, key)
        if self.security_protocol.startswith("SASL"):
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            assert self.sasl_password is not None
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return config

    def librdkafka_config(self) -> dict[str, Any]:
        """The same settings as librdkafka properties (the ingestor's confluent-kafka consumer)."""
        config = {
            _LIBRDKAFKA_NAMES[key]: value
            for key, value in self.client_config().items()
            if key != "ssl_check_hostname"
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return config


# kafka-python's argument names -> librdkafka's property names, for the same settings.
_LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}
