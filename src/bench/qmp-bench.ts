import { LocalHost } from '../host/local-host.js';
import { QMPClient } from 'node-qemu';
import { QmpClient } from '../qmp/qmp-client.js';
import { percentile } from './stats.js';

/**
 * QMP round trips against one QEMU, side by side in one run: tcelab's client,
 * the npm peer node-qemu, and the floor (a bare write-line/read-line loop on
 * the same socket). QMP serves one client at a time, so the three take turns,
 * in several interleaved rounds to cancel drift.
 */
export interface RttResult {
  name: string;
  samplesMs: number[];
  commandsPerSec: number;
}

/** `n` sequential calls of `once`: each one's time in ms, and calls per second over the loop. */
export async function timeLoop(n: number, once: () => Promise<unknown>): Promise<{ samples: number[]; perSec: number }> {
  const samples: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const a = process.hrtime.bigint();
    await once();
    samples.push(Number(process.hrtime.bigint() - a) / 1e6);
  }
  const total = Number(process.hrtime.bigint() - t0) / 1e9;
  return { samples, perSec: n / total };
}

async function floorClient(socketPath: string, withIds = false): Promise<{ roundTrip: () => Promise<void>; close: () => void }> {
  const sock = await new LocalHost().connectUnix(socketPath);
  let buf = '';
  let waiter: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      buf = buf.slice(nl + 1);
      const w = waiter;
      waiter = undefined;
      w?.();
    }
  });
  const line = (text: string) =>
    new Promise<void>((resolve) => {
      waiter = resolve;
      sock.write(text);
    });
  await new Promise<void>((resolve) => {
    waiter = resolve; // the greeting
  });
  await line('{"execute":"qmp_capabilities"}\n');
  let n = 0;
  // withIds: the same bytes tcelab sends (QEMU itself takes longer over a request with an id).
  return {
    roundTrip: () => line(withIds ? `{"execute":"query-status","id":"tcelab-${++n}"}\n` : '{"execute":"query-status"}\n'),
    close: () => sock.destroy(),
  };
}

export async function qmpBench(socketPath: string, perRound = 1000, rounds = 3): Promise<RttResult[]> {
  const acc: Record<string, { samples: number[]; perSec: number[] }> = {
    floor: { samples: [], perSec: [] },
    'floor+ids': { samples: [], perSec: [] },
    tcelab: { samples: [], perSec: [] },
    'node-qemu': { samples: [], perSec: [] },
  };
  for (let r = 0; r < rounds; r++) {
    for (const [name, ids] of [
      ['floor', false],
      ['floor+ids', true],
    ] as const) {
      const f = await floorClient(socketPath, ids);
      await timeLoop(50, f.roundTrip);
      const t = await timeLoop(perRound, f.roundTrip);
      acc[name]!.samples.push(...t.samples);
      acc[name]!.perSec.push(t.perSec);
      f.close();
    }
    {
      const c = await QmpClient.connect(socketPath);
      await timeLoop(50, () => c.queryStatus());
      const t = await timeLoop(perRound, () => c.queryStatus());
      acc.tcelab!.samples.push(...t.samples);
      acc.tcelab!.perSec.push(t.perSec);
      await c.close();
    }
    {
      const c = new QMPClient({ socketPath });
      await c.connect();
      await timeLoop(50, () => c.queryStatus());
      const t = await timeLoop(perRound, () => c.queryStatus());
      acc['node-qemu']!.samples.push(...t.samples);
      acc['node-qemu']!.perSec.push(t.perSec);
      await c.close();
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  return Object.entries(acc).map(([name, v]) => ({
    name,
    samplesMs: v.samples,
    commandsPerSec: v.perSec.reduce((a, b) => a + b, 0) / v.perSec.length,
  }));
}

export function summarize(results: RttResult[]): Record<string, { p50: number; p99: number; perSec: number }> {
  return Object.fromEntries(
    results.map((r) => [r.name, { p50: percentile(r.samplesMs, 50), p99: percentile(r.samplesMs, 99), perSec: r.commandsPerSec }]),
  );
}
