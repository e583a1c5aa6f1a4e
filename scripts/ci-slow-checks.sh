#!/usr/bin/env bash
# Checks too slow for the suite's 10 minutes, run by .ci/run after it: the nested lab host with its guest's QEMU
# taken from Debian sid instead of trixie (image with-qemu:sid: ≈100 MiB of packages the first time, then
# cached), which must pass nested-prereg-release like trixie's; every built-in scenario as the profiles run it
# (the host QEMU staged from Debian trixie, QEMU 10: labs restored from saved machines), checking that they were;
# and every built-in scenario again on this machine's own QEMU (Debian's qemu-system-ppc, 7.2 on bookworm), which
# boots every lab cold (a TCG guest restores faithfully only on 8.2 or later).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
work=$(mktemp -d /tmp/tcelab-slow-XXXXXX)
node -e '
  const p = JSON.parse(require("fs").readFileSync("qemu-configs/nested-lab-host.json", "utf8"));
  p.guest.image = "with-qemu:sid";
  p.description = "nested-lab-host with the guest QEMU from Debian sid";
  require("fs").writeFileSync(process.argv[1], JSON.stringify(p, null, 2));
' "$work/nested-lab-host-sid.json"
node dist/cli/main.js guest build --variant with-qemu:sid >&2
node dist/cli/main.js run nested-prereg-release --profile "$work/nested-lab-host-sid.json" --results "$work/results"
# The KVM lab host beyond the suite's two runs: the scenarios of the emulated lab on its inner KVM guest, the inner
# QEMU's lifetimes (quit, SIGTERM, SIGKILL, fds that outlive it) under KVM, and the seeded fault that moves the inner
# machine to TCG (≈3 min: TCG inside TCG), which must fail exactly the three KVM checks.
for s in prereg-accounting ddw-windows window-map-release guest-release shutdown-release nested-prereg-release hostile-process; do
  node dist/cli/main.js run "$s" --profile kvm-lab-host --results "$work/kvm-$s"
done
# Data through every window on the production path (the inner guest's own VFIO drives the passed-through edu, so
# every copy crosses its TCEs in the host kernel), and on 64 KiB pages.
node dist/cli/main.js run dma-integrity --profile kvm-lab-host --results "$work/dma-kvm"
node dist/cli/main.js guest build --kernel debian:trixie/64k >&2
node dist/cli/main.js run dma-integrity --kernel debian:trixie/64k --results "$work/dma-64k"
# The KVM lab host on 64 KiB pages, the page size POWER distributions ship: its host-side expectations take the host
# guest's page size from its kernel (512 MiB of inner RAM is 8192 FOLL_PIN pages there, not 131 072).
node dist/cli/main.js guest build --variant kvm-host --kernel debian:trixie/64k >&2
for s in kvm-tce-path prereg-accounting dma-integrity; do
  node dist/cli/main.js run "$s" --profile kvm-lab-host --kernel debian:trixie/64k --results "$work/kvm-64k-$s"
done
# The page size is the pinning kernel's: counting 4 KiB pages on that 64 KiB host fails exactly the FOLL_PIN check.
if node dist/cli/main.js run kvm-tce-path --profile kvm-lab-host --kernel debian:trixie/64k --set seedFaults=assume-4k-host-pages \
  --results "$work/kvm-64k-4k" --json >"$work/kvm-64k-4k.json"; then
  echo "kvm-tce-path on 64 KiB pages counting 4 KiB pages passed: the page-size check cannot fail" >&2
  exit 1
fi
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const failed = r.checks.filter((c) => c.status === "fail").map((c) => c.name);
  console.error(`assume-4k-host-pages failed: ${failed.join("; ")}`);
  if (r.error || JSON.stringify(failed) !== JSON.stringify(["host: FOLL_PIN pages while running ≈ guest RAM (VFIO pre-registration)"])) process.exit(1);
' "$work/kvm-64k-4k.json"
# A hostile guest against the KVM host's own TCE code, on a kernel without the bound's fix (6.12.107) and one with it
# (7.2.11): defect 4 (H_SUCCESS past a window's end, the DDW's WARNING) on the first, every refusal holding on the second.
node dist/cli/main.js matrix hostile-guest --kernels debian:trixie,debian:trixie-backports --profile kvm-lab-host \
  --results "$work/hostile-matrix"
node -e '
  const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const count = (col, status) => m.rows.filter((r) => r.cells[col]?.status === status).length;
  const defects = count("trixie", "known-defect");
  const fixedFails = m.rows.filter((r) => r.cells["trixie-backports"]?.status !== "pass").length;
  console.error(`hostile-guest: ${defects} known-defect checks on 6.12.107, ${fixedFails} not passing on 7.2.11`);
  if (defects < 4 || fixedFails !== 0) process.exit(1);
' "$work/hostile-matrix/matrix.json"
# 10 000 random TCE hypercalls and DDW RTAS calls judged against the model of QEMU's handlers, twice from the same
# seed: no disagreement, the same sequence.
for i in 1 2; do
  node dist/cli/main.js fuzz hcall --seed 1 --count 10000 --results "$work/fuzz-$i" --json >"$work/fuzz-$i.json"
done
node -e '
  const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
  console.error(`fuzz: ${a.count} calls, ${a.callsPerSec} calls/s; ${b.callsPerSec} calls/s; sequence ${a.sequenceSha256.slice(0, 16)}`);
  if (a.disagreement || b.disagreement || a.count !== 10000 || a.sequenceSha256 !== b.sequenceSha256) process.exit(1);
' "$work/fuzz-1.json" "$work/fuzz-2.json"
if node dist/cli/main.js run kvm-tce-path --set seedFaults=userspace-tce --results "$work/kvm-userspace" --json >"$work/kvm-userspace.json"; then
  echo "kvm-tce-path with userspace-tce passed: the KVM checks cannot fail" >&2
  exit 1
fi
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const failed = r.checks.filter((c) => c.status !== "pass").map((c) => c.name).sort();
  const want = ["KVM: QEMU handled none of the guest\u0027s TCE updates for the device", "KVM: the TCE tables of the passed-through device are in the kernel", "KVM: the VFIO group is attached to its in-kernel TCE tables"];
  console.error(`userspace-tce failed: ${failed.join("; ")}`);
  if (r.error || JSON.stringify(failed) !== JSON.stringify(want.sort())) process.exit(1);
' "$work/kvm-userspace.json"
# The KVM lab host on a kernel built from Debian's source with the lab fragment (npm test built it: the host guest and
# its inner guest both boot it; nested KVM-HV needs the radix MMU the fragment asks for), and the hostile guest's
# module built in that kernel's own build dir.
node dist/cli/main.js guest build --variant kvm-host --kernel debian-source:trixie >&2
node dist/cli/main.js run kvm-tce-path --profile kvm-lab-host --kernel debian-source:trixie --results "$work/kvm-source"
# The repository's fixes proven on that kernel (kernel-patches/6.12.117: defects 1, 3, 5, 6; built incrementally in the
# same build dir): on the KVM lab host, every known defect of these scenarios turns into a pass and nothing else changes.
node dist/cli/main.js matrix prereg-accounting kvm-vfio-early-exit hostile-guest --profile kvm-lab-host --jobs 1 \
  --kernels debian-source:6.12.117,debian-source:6.12.117+patches --results "$work/patched-matrix"
node -e '
  const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const p = m.fixProofs?.[0];
  console.error(p ? `fix proof: ${p.proven ? "PROVEN" : "NOT PROVEN"}, ${p.fixed.length} fixed, ${p.nowIssued.length} issued now, ${p.other.length} other changes, ${p.stillKnown.length} known left` : "no fix proof");
  if (!p?.proven) process.exit(1);
' "$work/patched-matrix/matrix.json"
# A bisection of a planted regression on Debian's source (scripts/bisect-history.sh: six commits, one that does not
# build, one that drops the EBUSY of a second registration): tcelab bisect must name it and skip the one that does
# not build; every step builds incrementally in the build dir of the debian-source:trixie kernel npm test built.
TCELAB_SLOW_CHECKS=1 npx vitest run test/lab/bisect.test.ts
node dist/cli/main.js run --all --jobs 2 --results "$work/restored"
node -e '
  const fs = require("fs");
  const s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const how = (r) => JSON.parse(fs.readFileSync(`${r.resultsDir}/results.json`, "utf8")).labStart?.how;
  const restored = s.runs.filter((r) => how(r) === "restored").length;
  console.error(`restored: ${restored} of ${s.runs.length} runs started from a saved machine`);
  if (restored === 0) process.exit(1);
' "$work/restored/summary.json"
node dist/cli/main.js --qemu qemu-system-ppc64 run --all --jobs 2 --results "$work/host-qemu"
