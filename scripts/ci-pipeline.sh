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

results=results/ci
rm -rf "$results" .gitlab-ci-local
start=$(date +%s)
npx --no-install gitlab-ci-local --concurrency 2 \
  --variable "TCELAB_CI_SCENARIOS=${TCELAB_CI_SCENARIOS:-window-map-release ddw-windows}" \
  --variable "TCELAB_CI_RESULTS=$results"
echo "ci-pipeline: the pipeline ran in $(( $(date +%s) - start )) s" >&2
node scripts/check-merged.mjs "$results/merged"
