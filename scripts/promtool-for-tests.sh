#!/usr/bin/env bash
# Install Prometheus and promtool (Debian's prometheus package gives both, as root) so the tests
# check and unit-test the shipped alert rules and run the monitoring stack end to end
# (tests/serve/test_monitoring_stack.py) instead of skipping. Idempotent: does nothing when both
# are on PATH.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null
fi
promtool --version 2>&1 | head -1
prometheus --version 2>&1 | head -1
