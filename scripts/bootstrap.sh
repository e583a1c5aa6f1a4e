#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for tcelab: the host's Debian packages (with --tests, also those only the
# tests need), the npm packages, and the TypeScript build. Safe to run before every command;
# it does nothing that is already done. (The guest image is built by
# `tcelab guest build`, which has its own cache.)
set -euo pipefail
cd "$(dirname "$0")/.."

# Host packages, by name only: apt resolves the versions.
HOST_PACKAGES=(
  qemu-system-ppc            # qemu-system-ppc64
  gcc-powerpc64le-linux-gnu  # cross compiler for the static guest agent
  make                       # guest/agent/Makefile builds it
  libc6-dev-ppc64el-cross    # its libc and linux/vfio.h
  xz-utils                   # kernel modules are .ko.xz
  util-linux                 # setpriv --pdeathsig: QEMU never outlives tcelab
  dpkg tar ca-certificates
  # Guest kernel modules built against the kernel under test (src/kbuild: the hostile-guest module), and kernels built
  # from source (--kernel tree:… / debian-source:…): kbuild's host tools; ccache keeps their objects ($TCELAB_CACHE/ccache)
  flex bison bc libelf-dev libssl-dev kmod ccache git
)
# `bash scripts/bootstrap.sh --tests`: what only the tests need besides (npm test passes it; npm run lab does not).
TEST_PACKAGES=(
  chromium                   # the live-view test drives a real headless browser
  procps                     # pgrep: a lab's QEMU is found by its name
)
if [ "${1:-}" = "--tests" ]; then
  HOST_PACKAGES+=("${TEST_PACKAGES[@]}")
fi
if [ -n "${TCELAB_EXTRA_HOST_PACKAGES:-}" ]; then
  read -r -a extra <<<"$TCELAB_EXTRA_HOST_PACKAGES"
  HOST_PACKAGES+=("${extra[@]}")
fi

missing=()
for p in "${HOST_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing host packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# npm packages: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.tcelab-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
  echo "$want" >"$stamp"
fi

# TypeScript build, when the sources changed since the last one, one build at a time: a second bootstrap beside a
# command of the first (the pipeline's two shards share this tree) must not rewrite dist/ under it — seen: a shard's
# node read dist/qemu/profile.js half written ("SyntaxError: Unexpected end of input").
mkdir -p dist
exec 9>dist/.tcelab-build.lock
flock 9
want=$(cat tsconfig.json package-lock.json scripts/bundle-cli.mjs $(find src -name '*.ts' | LC_ALL=C sort) | sha256sum | cut -d' ' -f1)
stamp=dist/.tcelab-build-sha256
if [ ! -x dist/cli/main.js ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -f "$stamp"
  npx --no-install tsc -p tsconfig.json >&2
  node scripts/bundle-cli.mjs >&2
  echo "$want" >"$stamp"
fi
flock -u 9
exec 9>&-
