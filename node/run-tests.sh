#!/usr/bin/env bash
# The Node package's tests (`make test-node`): installs the npm packages when needed (npm ci),
# transpiles the shipped component/checkpoint.wasm with jco (node/build.sh), then runs the unit
# tests (the API, the stores, the conformance runner's self-test, the README example), checks
# the TypeScript declarations (tsc --strict over test/types-check.ts, a user's program, and
# test/types-jco.ts, the declarations against jco's from the WIT; then runs the compiled
# types-check) and plays the conformance cases: `scripts/conformance.sh expand` (needs cargo)
# writes target/conformance/cases.json, test/conformance.mjs plays it on MapStorage, writes the
# transcripts and runs the testkit's checker on them. Needs Node 20+ with npm; fails on any
# failed or unplayed case. The packed tarball is tested by dist.sh + install-test.sh.
# The Redis Streams source's tests (test/redis-streams.test.js) need a real redis-server:
# without CKPT_TEST_REDIS_URL this script runs itself again under scripts/with-test-servers.sh,
# which starts one (and PostgreSQL) and stops it at the end; CKPT_SKIP_SERVER_TESTS=1 skips
# those tests instead (never under CI).
set -euo pipefail

node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z ${CKPT_TEST_REDIS_URL:-} && ${CKPT_SKIP_SERVER_TESTS:-} != 1 ]]; then
  exec bash "$node_dir/../scripts/with-test-servers.sh" bash "$node_dir/run-tests.sh" "$@"
fi
cd "$node_dir"

bash build.sh

echo "== node: unit tests, README examples, the Redis Streams source killed 2 x 24 times"
node --test --test-reporter=spec test/*.test.js

echo "== node: TypeScript declarations (tsc --strict, then the compiled types-check)"
rm -rf generated/tsc
npx --no-install tsc -p test/tsconfig.json
node generated/tsc/types-check.js
npx --no-install tsc -p test/tsconfig.redis-streams.json

echo "== node: conformance (expand the cases, play them, check the transcripts)"
bash ../scripts/conformance.sh expand
node test/conformance.mjs
