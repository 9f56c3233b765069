#!/usr/bin/env bash
# Set up .venv with every extra (torch, ray, kfp, onnx, postgres, dp, sign, explain, redis) and the test tools, then lint,
# type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
install_mlwarden "test,torch,ray,kfp,onnx,postgres,dp,sign,explain,redis"
echo "== ruff"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "== mypy"
.venv/bin/mypy
echo "== pytest (one worker per core; a test file stays on one worker, so its module fixtures run once)"
.venv/bin/python -m pytest -n auto --dist loadfile "$@"
