#!/usr/bin/env bash
# Fresh machine to a registered, signed phishing model: set up .venv, then run the demo pipeline
# on the bundled UCI Phishing Websites data with the embedded store (.mlwarden/ in this folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
install_mlwarden ""
.venv/bin/mlwarden demo "$@"
