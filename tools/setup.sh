#!/usr/bin/env bash
# Install Fidelio's build and test dependencies from Debian 12's archive and
# build it into ./build. Used by README's first command and by .ci/run, so a
# newcomer and CI install the same set. Uses sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config meson ninja-build python3  # toolchain
  librdkafka-dev libavro-dev libhiredis-dev             # Kafka, Avro, Redis clients
  libyaml-dev libjansson-dev libssl-dev libxxhash-dev  # config YAML, JSON lines, hashing/base64
  libmicrohttpd-dev                                     # the HTTP server: /metrics, health, control room
  libjemalloc-dev                                       # fidelio's allocator (meson.build: allocator)
  check                                                 # unit test framework
  redis-server kcat                                     # real services and the independent Kafka client for tests
  python3-yaml systemd                                  # checks of the deploy files
  default-jdk-headless maven                            # the real Apache Kafka broker of the 'kafka' suite
  clang libclang-rt-14-dev                              # libFuzzer harnesses (tests/fuzz)
  prometheus chromium                                   # a real scraper and a real browser in the tests
  python3-confluent-kafka                               # independent client watching transactions (tests/kafka/txn_probe.py)
  bsdutils                                              # script(1): a terminal for replay's progress line (e2e_replay_range)
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

if [ -f build/build.ninja ]; then
  meson setup --reconfigure build >/dev/null
else
  meson setup build >/dev/null
fi
meson compile -C build >/dev/null
# The Kafka broker's jars (Maven artifact org.apache.kafka:kafka_2.13), cached
# under ~/.cache/fidelio; the 'kafka' test suite runs them.
bash tests/kafka/broker.sh jars >/dev/null
echo "setup: dependencies installed, fidelio built at build/fidelio"
