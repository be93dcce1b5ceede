#!/usr/bin/env bash
# Generate Python gRPC code from protos/ (owned by the services foundation; see services/api).
set -euo pipefail
py=${1:-.venv/bin/python}
[ -n "$(ls protos/lpm/v1/*.proto 2>/dev/null)" ] || exit 0
out=services/api/_generated
mkdir -p "$out"
"$py" -m grpc_tools.protoc -Iprotos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" protos/lpm/v1/*.proto
