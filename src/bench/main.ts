#!/usr/bin/env node
import { writeReportFiles } from '../report/write.js';
import { resolveQemuInput, withStagedQemu } from '../qemu/stage-qemu.js';
import { StderrProgress } from '../util/progress.js';
import { writeFile, mkdir } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { Lab } from '../lab/lab.js';
import { qmpBench, summarize } from './qmp-bench.js';
import { bootOnce, floorInitrd, cleanupFloor } from './boot-bench.js';
import { nestedBench } from './nested-bench.js';
import { kernelBuildBench } from './kernel-build-bench.js';
import { median, fmt, percentile } from './stats.js';
import { roundTimeline } from './round-timeline.js';
import { qemuVersionOf, restoreUnsafeReason } from '../snapshot/snapshot.js';
import { runScenario } from '../scenario/runner.js';
import { allScenarioFiles, procedures } from '../scenario/registry.js';
import { definitionFromFile } from '../scenario/data/interpreter.js';
import { PinnedPageSampler } from '../probes/sampler.js';
import { ProcCountersProbe } from '../probes/proc.js';
import { LocalHost } from '../host/local-host.js';
import { AgentHost } from '../host/agent-host.js';
import { packageRoot } from '../util/paths.js';

/**
 * `npm run bench`: every ratio measured side by side in one run, on this
 * machine. `--quick` skips the time-to-verdict of the built-in scenarios;
 * `--kernel-only` runs only the kernel builds (kernel-build-bench.ts), and
 * `--cold` adds their cold build (10–18 minutes).
 */
const quick = process.argv.includes('--quick');
const kernelOnly = process.argv.includes('--kernel-only');
const cold = process.argv.includes('--cold');
const lines: string[] = [];
const out = (s = '') => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

/** Drops the page cache (root only); false where it cannot. */
function dropPageCache(): boolean {
  try {
    spawnSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  // TCELAB_QEMU=debian:<suite> as on the CLI: staged from that suite's packages (restores need QEMU 8.2 or later).
  if (process.env.TCELAB_QEMU) process.env.TCELAB_QEMU = await resolveQemuInput(process.env.TCELAB_QEMU, 'TCELAB_QEMU');
  // The profile's QEMU as its labs run it (a debian:<suite> spec staged).
  const profile = await withStagedQemu(await loadProfile('emulated'), new StderrProgress());
  const image = await requireGuestImage('base');
  out(`tcelab bench — ${new Date().toISOString()}`);
  out(
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ` +
      `${process.version}, guest ${image.manifest.kernelRelease}`,
  );
  out();
  if (kernelOnly) {
    await kernelBuildBench(out, { profile, debianImage: image, cold });
    return writeResults(cold ? '-kernel-cold' : '-kernel');
  }

  // 1. Boot: floor vs tcelab, alternating.
  const floor = await floorInitrd(image);
  const f: number[] = [];
  const t: number[] = [];
  const r: number[] = [];
  // Restores are measured with a QEMU that restores a TCG guest faithfully (8.2 on: TCELAB_QEMU / --qemu picks it).
  const unsafe = restoreUnsafeReason(profile, qemuVersionOf(profile.qemu.binary));
  // A snapshot of this machine exists before the restored runs are timed (the first cold lab saves it).
  if (!unsafe) await bootOnce(profile, image, { snapshots: 'use', saving: true });
  // Restores are cheap: three after each cold boot, so their p90 is of nine.
  for (let i = 0; i < 3; i++) {
    f.push(await bootOnce(profile, image, { floor, snapshots: 'off' }));
    t.push(await bootOnce(profile, image, { snapshots: 'off' }));
    if (!unsafe) for (let j = 0; j < 3; j++) r.push(await bootOnce(profile, image, { snapshots: 'use' }));
  }
  await cleanupFloor(floor);
  // The worst case of a restore: the snapshot's pages not in the page cache (a fresh machine, or one that evicted them).
  const dropped = !unsafe && dropPageCache() ? await bootOnce(profile, image, { snapshots: 'use' }) : undefined;
  const list = (xs: number[]) => `median ${fmt(median(xs) / 1000)} s  [${xs.map((x) => fmt(x / 1000)).join(', ')}]`;
  out(`## Boot (spawn → ready), interleaved: 3 floor, 3 cold, ${r.length} restored`);
  out(`floor    (spawn → first line of a minimal /init, same kernel/VOF/machine): ${list(f)}`);
  out(`cold     (spawn → guest agent answers, --cold):                          ${list(t)}`);
  out(`restored (spawn → guest agent answers, from a snapshot, clock set):      ${unsafe ? `not measured: ${unsafe}` : list(r)}`);
  if (dropped !== undefined) out(`restored right after the page cache was dropped (echo 3 > drop_caches):   ${fmt(dropped / 1000)} s`);
  out(`ratio cold / floor: ${fmt(median(t) / median(f))}  (target ≤ 1.15)`);
  if (!unsafe) {
    const p90 = percentile(r, 90);
    out(
      `restored p90: ${fmt(p90 / 1000)} s (target ≤ 0.3 s: ${p90 <= 300 ? 'met' : 'missed'}); ratio restored p90 / floor: ` +
        `${fmt(p90 / median(f))} (target ≤ 0.1: ${p90 / median(f) <= 0.1 ? 'met' : 'missed'})`,
    );
  }
  out();

  // The whole command a person types, restored: node starting, the image and snapshot looked up, boot, agent, power-off.
  if (!unsafe) {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const r1 = spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), 'run', '--json'], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      if (r1.status !== 0) throw new Error(`tcelab run failed: ${r1.stderr.slice(-500)}`);
      runs.push(Date.now() - t0);
    }
    out('## tcelab run (the whole command, restored), 5 runs');
    out(`${list(runs)}; p90 ${fmt(percentile(runs, 90) / 1000)} s (target ≤ 1.5 s: ${percentile(runs, 90) <= 1500 ? 'met' : 'missed'})`);
    out();
  }

  // 2. QMP round trips against one QEMU held at -S.
  const lab = await Lab.launch(profile, { image, extraArgs: ['-S'] });
  const sock = lab.paths.qmpSocket;
  await lab.qmp.close(); // QMP serves one client at a time: hand the socket to the bench.
  const rtt = summarize(await qmpBench(sock, 1000, 3));
  await lab.dispose();
  out('## QMP query-status round trip, 3 interleaved rounds × 1000 each');
  out('client      p50 (ms)  p99 (ms)  commands/s');
  for (const [name, r] of Object.entries(rtt))
    out(`${name.padEnd(11)} ${fmt(r.p50, 3).padStart(8)}  ${fmt(r.p99, 3).padStart(8)}  ${fmt(r.perSec, 0).padStart(10)}`);
  out(
    `ratio tcelab / node-qemu: p50 ${fmt(rtt.tcelab!.p50 / rtt['node-qemu']!.p50)}, throughput ` +
      `${fmt(rtt['node-qemu']!.perSec / rtt.tcelab!.perSec)}  (target ≤ 1.0)`,
  );
  out(
    `ratio tcelab / floor:     p50 ${fmt(rtt.tcelab!.p50 / rtt.floor!.p50)}, throughput ${fmt(rtt.floor!.perSec / rtt.tcelab!.perSec)}  (target ≤ 1.2)`,
  );
  out(
    `ratio tcelab / floor+ids: p50 ${fmt(rtt.tcelab!.p50 / rtt['floor+ids']!.p50)}, throughput ` +
      `${fmt(rtt['floor+ids']!.perSec / rtt.tcelab!.perSec)}  (same bytes on the wire: the client's own cost)`,
  );
  out('(tcelab tags every command with an id so that a reply arriving after its timeout is recognised and dropped;');
  out(' node-qemu and the plain floor send none, and QEMU takes longer over a request that carries one.)');
  out();

  // 3. Registration cost in the guest, and 4. sampler overhead and detection latency.
  const reg = await Lab.launch(profile, { image });
  try {
    await reg.waitForGuestInit();
    const agent = await reg.agent();
    const info = await agent.info();
    const edu = info.iommuGroups.flatMap((g) => g.devices).find((d) => d.vendor === '0x1234')!;
    const { group } = await agent.bind(edu.address);
    const w = await agent.startWorker();
    await w.open(group);
    out('## REGISTER_MEMORY in the guest (TCG), host-side time incl. one agent round trip');
    out('size     backing   ms        pages/s (4 KiB)  time vs 16 MiB');
    for (const hugetlb of [false, true]) {
      let base = 0;
      for (const mib of [16, 64, 256]) {
        const r = await w.alloc(mib * 2 ** 20, hugetlb);
        const t0 = process.hrtime.bigint();
        await w.register(r.region);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        await w.unregister(r.region);
        await w.free(r.region);
        if (mib === 16) base = ms;
        out(
          `${`${mib} MiB`.padEnd(8)} ${(hugetlb ? 'hugetlb' : '4K pages').padEnd(9)} ${fmt(ms, 1).padStart(8)}  ` +
            `${fmt((mib * 256) / (ms / 1000), 0).padStart(15)}  ${fmt(ms / base)}× (size ×${mib / 16})`,
        );
      }
    }
    out();

    // Sampler overhead: controller CPU with the host sampler at 20 Hz, against idle, 5 s each.
    const cpuOver = async (run: boolean) => {
      const s = new PinnedPageSampler(Date.now());
      if (run) s.start('host', new ProcCountersProbe(new LocalHost()), { rateHz: 20, pid: () => reg.process.pid });
      const c0 = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 5000));
      const c = process.cpuUsage(c0);
      await s.stop();
      return { cpuMs: (c.user + c.system) / 1000, samples: s.samples.length };
    };
    const idle = await cpuOver(false);
    const busy = await cpuOver(true);
    out('## Sampler');
    out(
      `host sampler at 20 Hz: ${busy.samples} samples in 5 s, controller CPU ${fmt(busy.cpuMs, 0)} ms vs ` +
        `${fmt(idle.cpuMs, 0)} ms idle → ${fmt(((busy.cpuMs - idle.cpuMs) / 5000) * 100, 2)}% of one core, ` +
        `${fmt((busy.cpuMs - idle.cpuMs) / busy.samples, 3)} ms per sample`,
    );

    // Detection latency: from a change's completion (the ioctl's reply) to the first sample showing it.
    const guest = new PinnedPageSampler(Date.now());
    guest.start('guest', new ProcCountersProbe(new AgentHost(agent)), { rateHz: 5 });
    await guest.waitFor('guest', () => true, { after: 0, timeoutMs: 5000 });
    const lat: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await w.alloc(8 * 2 ** 20);
      const before = guest.samples.at(-1)!.counters.pinnedPages;
      await w.register(r.region);
      const doneAt = guest.now();
      const seen = await guest.waitFor('guest', (c) => c.pinnedPages >= before + 2048, { after: doneAt, timeoutMs: 5000 });
      if (seen) lat.push(seen.t - doneAt);
      await w.unregister(r.region);
      await w.free(r.region);
      await new Promise((res) => setTimeout(res, 1300 + i * 37));
    }
    await guest.stop();
    out(
      `guest sampler at 5 Hz through the agent: detection latency median ${fmt(median(lat), 0)} ms, max ` +
        `${fmt(Math.max(...lat), 0)} ms over ${lat.length} registrations (bound: one interval, 200 ms, plus a round trip)`,
    );
    out();
    await w.stop('TERM');
  } finally {
    await reg.close();
  }

  // 5. The nested lab host.
  await nestedBench(out);

  // 6. Kernels built from a source tree.
  await kernelBuildBench(out, { profile, debianImage: image, cold });

  // 7. Time to verdict of each built-in scenario.
  if (!quick) {
    out('## Time to verdict (launch → verdict written), restored and cold, one run each');
    out(`${'scenario'.padEnd(28)} ${'restored'.padStart(9)} ${'cold'.padStart(9)}  ratio  verdicts`);
    const rounds: string[] = [];
    for (const file of await allScenarioFiles()) {
      for (const v of file.variants) {
        const label = [file.name, ...Object.values(v).filter((x) => typeof x === 'string')].join('-');
        const def = definitionFromFile(file, procedures);
        const cold = await runScenario(def, {
          writeResults: writeReportFiles,
          options: v,
          snapshots: 'off',
          resultsDir: join('/tmp', `tcelab-bench-${label}-cold`),
        });
        let warm = await runScenario(def, {
          writeResults: writeReportFiles,
          options: v,
          resultsDir: join('/tmp', `tcelab-bench-${label}`),
        });
        // The first run of a machine is the one that saves its snapshot: time a restored one after it.
        if (warm.labStart?.how !== 'restored' && warm.labStart?.saved)
          warm = await runScenario(def, { writeResults: writeReportFiles, options: v, resultsDir: join('/tmp', `tcelab-bench-${label}`) });
        const how = warm.labStart?.how === 'restored' ? '' : ` (not restored: ${warm.labStart?.why})`;
        out(
          `${label.padEnd(28)} ${fmt(warm.durationMs / 1000, 1).padStart(7)} s ` +
            `${fmt(cold.durationMs / 1000, 1).padStart(7)} s  ${fmt(warm.durationMs / cold.durationMs)}   ` +
            `${warm.passed ? 'PASS' : 'FAIL'} / ${cold.passed ? 'PASS' : 'FAIL'}${how}`,
        );
        // A scenario of rounds (ddw-hotplug): where a round's time goes, phase by phase, in the restored run.
        const table = roundTimeline(warm.timings);
        if (table.length) rounds.push(`${label}: a round's timeline, phase by phase (the restored run)`, ...table.map((l) => `  ${l}`));
      }
    }
    for (const l of rounds) out(l);
    out();
  }

  await writeResults(quick ? '-quick' : '');
}

/** What the bench printed, kept in bench/results/<date><suffix>.txt. */
async function writeResults(suffix: string): Promise<void> {
  const dir = join(packageRoot, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().slice(0, 10)}${suffix}.txt`);
  await writeFile(file, `${lines.join('\n')}\n`);
  process.stdout.write(`raw output kept in ${file}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
