#!/usr/bin/env bash
# Test-only packages that cannot be plain extras (reference implementations with stale pins).
# Sourced by .ci/run inside its venv; developers run it once in theirs.
set -euo pipefail
