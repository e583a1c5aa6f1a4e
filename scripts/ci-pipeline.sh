#!/usr/bin/env bash
# Runs .gitlab-ci.yml for real with gitlab-ci-local (shell executor): the images job, the suite as 2 shards, the
# merge job; on a subset of the scenarios small enough for CI. Then checks what the merge published: its KCIDB
# document against KCIDB's schema, and that both shards came back. Idempotent: installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# gitlab-ci-local copies artifacts with rsync.
if ! command -v rsync >/dev/null; then
  echo "ci-pipeline: installing rsync" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends rsync >&2
fi
bash scripts/bootstrap.sh
# gitlab-ci-local is CI tooling, not the project's: installed beside it (.ci-tools/), so `npm ci` stays small.
# 4.60.0: the newest that runs on Node 20 (later 4.x need Set.prototype.union).
glc=.ci-tools/node_modules/.bin/gitlab-ci-local
if [ "$("$glc" --version 2>/dev/null)" != "4.60.0" ]; then
  echo "ci-pipeline: installing gitlab-ci-local 4.60.0 in .ci-tools/" >&2
  npm install --prefix .ci-tools --no-save --no-audit --no-fund gitlab-ci-local@4.60.0 >&2
fi

results=results/ci
rm -rf "$results" .gitlab-ci-local
start=$(date +%s)
"$glc" --concurrency 2 \
  --variable "TCELAB_CI_SCENARIOS=${TCELAB_CI_SCENARIOS:-window-map-release ddw-windows}" \
  --variable "TCELAB_CI_RESULTS=$results"
echo "ci-pipeline: the pipeline ran in $(( $(date +%s) - start )) s" >&2
node scripts/check-merged.mjs "$results/merged"
