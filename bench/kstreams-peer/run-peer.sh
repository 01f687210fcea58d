#!/usr/bin/env bash
# run-peer.sh - build (once) and run the Kafka Streams peer; arguments go to
# io.fidelio.peer.Peer (see Peer.java). Maven fetches the dependencies on the
# first build (kafka-streams, avro, slf4j-simple; rocksdbjni comes with Streams).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f target/kstreams-peer.jar ] || [ -n "$(find src pom.xml ../../schemas -newer target/kstreams-peer.jar -print -quit)" ]; then
    mvn -q -B package -DskipTests >&2
fi
exec java ${PEER_JAVA_OPTS:--Xmx1g} -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "target/kstreams-peer.jar:target/lib/*" io.fidelio.peer.Peer "$@"
