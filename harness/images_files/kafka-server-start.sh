#!/usr/bin/env bash
# Starts the Kafka broker like upstream's kafka-server-start.sh: server.properties [--override k=v]*.
if [ $# -lt 1 ]; then
	echo "USAGE: $0 [-daemon] server.properties [--override property=value]*" >&2
	exit 1
fi
: "${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
export KAFKA_HEAP_OPTS
exec "$(dirname "$0")/kafka-run-class.sh" -name kafkaServer kafka.Kafka "$@"
