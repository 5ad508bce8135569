#!/usr/bin/env bash
# Print the consul binary to use: one on PATH first, else the one
# build/install-consul.sh unpacked into .cache/consul/. Exit 1 if neither.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHED="$ROOT/.cache/consul/usr/bin/consul"

if found="$(command -v consul)"; then
    echo "$found"
elif [ -x "$CACHED" ]; then
    echo "$CACHED"
else
    echo "consul-path: no consul on PATH or in $ROOT/.cache/consul (run build/install-consul.sh)" >&2
    exit 1
fi
