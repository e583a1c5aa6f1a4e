#!/usr/bin/env node
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { Lab } from '../lab/lab.js';
import { findGuestDevice } from '../scenario/guest-vfio.js';
import { pinnedPages } from '../scenario/guest-pins.js';
import { describeReports, scanKernelLog } from '../scenario/kernel-log.js';

/**
 * Defect 1 followed to the end, in a real emulated lab: a worker registers
 * 16 MiB, maps 1 MiB of it, unregisters it (the kernel says yes), unmaps and
 * is SIGKILLed. How long do its pins stay? This samples the guest's pinned
 * pages and scans its dmesg for the destroy_context() WARNING for
 * `--minutes` (default 5), with `echo 3 > drop_caches` and a burst of memory
 * pressure (a tmpfs filled to `--pressure` % of guest RAM, default 90, until
 * the kernel reclaims; then emptied) on the way.
 *
 *   node dist/bench/orphan-lifetime.js [--minutes N] [--pressure PERCENT]
 */
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const minutes = Number(arg('--minutes') ?? 5);
const pressure = Number(arg('--pressure') ?? 90) / 100;

async function main(): Promise<void> {
  const profile = await loadProfile('emulated');
  const image = await requireGuestImage('base');
  const lab = await Lab.launch(profile, { image });
  try {
    await lab.waitForGuestInit();
    const agent = await lab.agent();
    const info = await agent.info();
    const pins = async () => pinnedPages(await agent.counters());
    const warnings = async () => scanKernelLog((await agent.exec(['dmesg'])).stdout);
    const dev = await findGuestDevice(agent, profile);
    const { group } = await agent.bind(dev.address);
    const base = await pins();
    const w = await agent.startWorker();
    await w.open(group);
    const r = await w.alloc(16 << 20);
    await w.register(r.region);
    await w.map(r.region, 0, { size: 1 << 20 });
    const unregistered = await w.unregister(r.region).then(
      () => 'returned 0',
      (e: Error) => `failed: ${e.message}`,
    );
    await w.unmap(0, 1 << 20);
    await w.stop('KILL');
    const t0 = Date.now();
    const killedAtUptime = Number((await agent.readFile('/proc/uptime')).content.split(' ')[0]);
    const since = () => ((Date.now() - t0) / 1000).toFixed(1);
    process.stdout.write(
      `kernel ${info.kernelRelease}, page size ${info.pageSize}; unregister while mapped ${unregistered}; worker SIGKILLed at t=0\n`,
    );
    let warnedAt: string | undefined;
    const report = async (event: string) => {
      const held = (await pins()) - base;
      const w = await warnings();
      if (w.length && !warnedAt) {
        // The WARNING's own printk time, against the guest's uptime at the kill.
        const dmesg = (await agent.exec(['dmesg'])).stdout;
        const at = /^\[\s*(\d+\.\d+)\][^\n]*destroy_context/m.exec(dmesg)?.[1];
        warnedAt = at ? `${(Number(at) - killedAtUptime).toFixed(1)} s after the kill (printk time)` : `by t=${since()} s`;
      }
      process.stdout.write(
        `t=${since()} s  ${event.padEnd(34)} pinned above baseline: ${held} pages; kernel reports: ${w.length ? describeReports(w, 1) : 'none'}\n`,
      );
      return held;
    };
    const end = t0 + minutes * 60_000;
    const plan: Array<{ at: number; event: string; act?: () => Promise<unknown> }> = [
      { at: 1, event: 'after 1 s' },
      { at: 5, event: 'after 5 s' },
      { at: 20, event: 'after 20 s' },
      { at: 60, event: 'after 60 s' },
      { at: 61, event: 'after echo 3 > drop_caches', act: () => agent.exec(['sh', '-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']) },
      {
        at: 90,
        event: `after memory pressure (${pressure * 100} % of RAM)`,
        act: () =>
          agent.exec(
            [
              'sh',
              '-c',
              `mkdir -p /run/pressure && mount -t tmpfs -o size=${Math.floor(profile.qemu.memoryMiB * pressure)}m tmpfs /run/pressure && ` +
                `dd if=/dev/zero of=/run/pressure/fill bs=1M count=${Math.floor(profile.qemu.memoryMiB * pressure)} 2>/dev/null; ` +
                `grep -E "MemFree|MemAvailable" /proc/meminfo; grep -E "^(pgscan|pgsteal)_(kswapd|direct) |^oom_kill " /proc/vmstat; ` +
                `rm -f /run/pressure/fill; umount /run/pressure`,
            ],
            120_000,
          ),
      },
    ];
    for (let m = 2; m * 60 <= minutes * 60; m++) plan.push({ at: m * 60, event: `after ${m} min` });
    plan.sort((a, b) => a.at - b.at);
    for (const step of plan) {
      if (t0 + step.at * 1000 > end) break;
      await new Promise((res) => setTimeout(res, Math.max(0, t0 + step.at * 1000 - Date.now())));
      const out = step.act ? await step.act() : undefined;
      if (out && typeof out === 'object' && 'stdout' in out && (out as { stdout: string }).stdout.trim()) {
        process.stdout.write(`         ${(out as { stdout: string }).stdout.trim().split('\n').join(' | ')}\n`);
      }
      await report(step.event);
    }
    process.stdout.write(`destroy_context WARNING: ${warnedAt ?? 'never'}\n`);
    const w2 = await warnings();
    for (const x of w2) process.stdout.write(`  ${x.kind}: ${x.line}\n    ${x.excerpt.join('\n    ')}\n`);
  } finally {
    await lab.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`orphan-lifetime: ${(err as Error).message}\n`);
  process.exit(1);
});
