#!/usr/bin/env bash
# Formats and inspects KRaft storage like upstream's kafka-storage.sh
# (format -t CLUSTER_ID -c server.properties [--standalone] [--ignore-formatted], random-uuid, info).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
