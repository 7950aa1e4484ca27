#!/usr/bin/env bash
# The tests. Installs what they need beside cargo's dependencies (the
# Python packages of the xDS interop test's control plane, in a virtual
# environment under target/), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import grpc, envoy.service.discovery.v3' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/xds/requirements.txt
fi
export SINEW_XDS_PYTHON="$PWD/$venv/bin/python"

cargo test --workspace --all-features "$@"
