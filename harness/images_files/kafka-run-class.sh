#!/usr/bin/env bash
# Runs a Java class of the Kafka distribution in /opt/kafka/libs with the environment variables of
# upstream's kafka-run-class.sh (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS,
# KAFKA_LOG4J_OPTS, JAVA_HOME). Logs go to the console only (the broker's to stdout, tools' to
# stderr): pods collect them from there.
set -eo pipefail
base_dir="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
	echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]" >&2
	exit 1
fi
# Upstream's daemon/GC-log switches write files; here they are accepted and ignored.
while [ $# -gt 0 ]; do
	case "$1" in
	-name) shift 2 ;;
	-loggc | -daemon) shift ;;
	*) break ;;
	esac
done
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties}"
# shellcheck disable=SC2086 # the *_OPTS variables hold several options each
exec "$java" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_OPTS $KAFKA_LOG4J_OPTS \
	-cp "$base_dir/libs/*" "$@"
