#!/usr/bin/env bash
# Install redis-server (Debian's package, as root) so the replica tests run two servers sharing
# guard state in a real Redis instead of skipping. Idempotent: does nothing when it is there.
# The tests start their own redis-server on a free port; the system service is not used.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
        >/dev/null
fi
redis-server --version | head -1
