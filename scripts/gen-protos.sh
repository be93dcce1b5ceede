#!/usr/bin/env bash
# Generate Python gRPC code from protos/ into services/api/_generated (gitignored).
# The same generator runs on first import of `services.api` when the output is missing or stale,
# so a plain `pip install -e .` works too; this script is the build's explicit step.
set -euo pipefail
py=${1:-.venv/bin/python}
[ -n "$(ls protos/lpm/v1/*.proto 2>/dev/null)" ] || exit 0
"$py" -c "from services.api.codegen import generate; generate(force=True)"
