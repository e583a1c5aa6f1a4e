import { join } from 'node:path';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { Lab } from '../lab/lab.js';
import { AgentHost } from '../host/agent-host.js';
import { PinnedPageSampler } from '../probes/sampler.js';
import { ProcCountersProbe } from '../probes/proc.js';
import { median, fmt } from './stats.js';
import { timeLoop } from './qmp-bench.js';

/** p50 of `n` sequential calls, in ms. */
async function p50(n: number, call: () => Promise<unknown>): Promise<number> {
  return median((await timeLoop(n, call)).samples);
}

/** p50 of 200 round trips of 100 bytes through the agent's relay to `tcelab-agent echo-server` in the guest. */
async function echoRoundTrip(host: AgentHost): Promise<number> {
  const server = await host.spawn(['/usr/sbin/tcelab-agent', 'echo-server', '/tmp/tcelab-bench-echo.sock']);
  try {
    let sock: import('node:stream').Duplex | undefined;
    for (let i = 0; i < 50 && !sock; i++) {
      sock = await host.connectUnix('/tmp/tcelab-bench-echo.sock').catch(async () => {
        await new Promise((r) => setTimeout(r, 100));
        return undefined;
      });
    }
    if (!sock) throw new Error('the echo server in the guest did not listen');
    const msg = Buffer.alloc(100, 0x61);
    let got = 0;
    let wake: () => void = () => {};
    sock.on('data', (d: Buffer) => {
      got += d.length;
      wake();
    });
    const ms = await p50(200, async () => {
      const want = got + msg.length;
      const back = new Promise<void>((r) => (wake = () => got >= want && r()));
      sock!.write(msg);
      await back;
    });
    sock.destroy();
    return ms;
  } finally {
    server.kill('SIGKILL');
    await server.exited;
  }
}

/**
 * The nested lab host, measured: outer boot, inner QEMU start → QMP, QMP
 * through the agent's relay against the agent's own round trip and against
 * QMP on this machine, and pin release after quit / SIGTERM / SIGKILL with the
 * guest sampled at 20 Hz (the scenario samples at 5 Hz).
 */
export async function nestedBench(out: (s?: string) => void): Promise<void> {
  const profile = await loadProfile('nested-lab-host');
  const inner = profile.inner!;
  const outer = await Lab.launch(profile, { image: await requireGuestImage(profile.guest.image, profile.guest.kernel) });
  try {
    const init = await outer.waitForGuestInit();
    const agent = await outer.agent();
    const host = new AgentHost(agent);
    const pages = (inner.qemu.memoryMiB * 2 ** 20) / (await agent.info()).pageSize;
    out('## Nested lab host (nested-lab-host: 3 GiB guest with QEMU, inner pseries 256 MiB at -S)');
    out(`outer boot, spawn → init: ${fmt(init.spawnToInitMs / 1000)} s`);
    const sampler = new PinnedPageSampler(Date.now());
    sampler.start('guest', new ProcCountersProbe(host), { rateHz: 20 });
    const rows: string[] = [];
    const starts: number[] = [];
    let rtt: { relay: number; echo: number; agent: number; local: number } | undefined;
    for (const method of ['quit', 'term', 'kill', 'quit', 'term', 'kill'] as const) {
      const base = (await sampler.waitFor('guest', () => true, { after: sampler.now(), timeoutMs: 5000 }))!;
      const t0 = Date.now();
      const lab = await Lab.launch(inner, { host, runtimeRoot: join(outer.paths.dir, 'inner-runtime') });
      try {
        starts.push(Date.now() - t0);
        if (!rtt) {
          rtt = {
            relay: await p50(200, () => lab.qmp.queryStatus()),
            echo: await echoRoundTrip(host),
            agent: await p50(200, () => agent.ping()),
            local: await p50(200, () => outer.qmp.queryStatus()),
          };
        }
        const held = await sampler.waitFor('guest', (c) => c.pinnedPages - base.counters.pinnedPages >= pages, {
          after: 0,
          timeoutMs: 10_000,
        });
        const requestT = sampler.now();
        const sd = await lab.shutdown(method);
        const back = await sampler.waitFor('guest', (c) => c.pinnedPages === base.counters.pinnedPages, {
          after: requestT,
          timeoutMs: 10_000,
        });
        rows.push(
          `${method.padEnd(5)} pins +${(held?.counters.pinnedPages ?? 0) - base.counters.pinnedPages}, QEMU exit ` +
            `${sd.durationMs} ms, pins back ${back ? `${back.t - requestT} ms` : 'NOT within 10 s'} after the request`,
        );
      } finally {
        await lab.dispose();
      }
    }
    await sampler.stop();
    out(
      `inner QEMU start → QMP (through the agent): median ${fmt(median(starts) / 1000)} s  [${starts.map((x) => fmt(x / 1000)).join(', ')}]`,
    );
    out('round trip p50 (200 each):');
    out(`  agent ping                               ${fmt(rtt!.agent, 3).padStart(7)} ms  (the floor: one request over virtio-serial)`);
    out(`  relay to an echo server in the guest     ${fmt(rtt!.echo, 3).padStart(7)} ms  (100 bytes there and back)`);
    out(`  QMP query-status to the inner QEMU       ${fmt(rtt!.relay, 3).padStart(7)} ms  (through the relay)`);
    out(`  QMP query-status on this machine         ${fmt(rtt!.local, 3).padStart(7)} ms  (the outer QEMU, native)`);
    out(
      `ratio relay echo / agent ping: ${fmt(rtt!.echo / rtt!.agent)}  (the relay's own cost: a stream-write, the ` +
        `peer woken, a long-poll reply — three guest wake-ups under TCG against one)`,
    );
    out(
      `ratio inner QMP / relay echo:  ${fmt(rtt!.relay / rtt!.echo)}  (the inner QEMU's own time: it runs emulated, on the guest's one vCPU)`,
    );
    out('pin release, guest sampled at 20 Hz (latency accurate to 50 ms):');
    for (const r of rows) out(`  ${r}`);
    out();
    await outer.shutdown('powerdown');
  } finally {
    await outer.dispose();
  }
}
