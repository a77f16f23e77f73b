#!/usr/bin/env bash
# The Node host's tests (`make test-node`): installs the npm packages when needed (npm ci),
# transpiles target/checkpoint.wasm with jco (node/build.sh), then runs the unit tests (the API,
# the stores, the conformance runner's self-test, the README example) and plays every
# conformance case file. Needs Node 20+ with npm; fails on any failed or unplayed case.
set -euo pipefail

node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$node_dir"

bash build.sh

echo "== node: unit tests, README example"
node --test --test-reporter=spec test/*.test.js

echo "== node: conformance"
node test/conformance.mjs
