#!/usr/bin/env bash
# Install promtool (Debian's prometheus package, as root) so the tests check and unit-test the
# shipped alert rules instead of skipping. Idempotent: does nothing when promtool is there.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null
fi
promtool --version | head -1
