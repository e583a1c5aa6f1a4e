import type { Host } from '../host/host.js';
import { describeThreadStates, threadStates } from '../probes/thread-states.js';
import type { Profile } from '../qemu/profile.js';
import type { ExitInfo, QemuProcess } from '../qemu/qemu-process.js';
import type { QmpClient } from '../qmp/qmp-client.js';
import type { Progress } from '../util/progress.js';

/** powerdown: ask the guest (EPOW); quit: QMP quit; term: SIGTERM to QEMU; kill: SIGKILL. Each escalates to kill. */
export type ShutdownMethod = 'powerdown' | 'quit' | 'term' | 'kill';

export interface ShutdownReport {
  requested: ShutdownMethod;
  /** What actually stopped QEMU, after escalation. */
  effective: ShutdownMethod;
  /** SHUTDOWN event data, if one arrived. */
  shutdownEvent?: Record<string, unknown>;
  exit: ExitInfo;
  /** From the request to process exit. */
  durationMs: number;
  escalations: string[];
}

/** The parts of a lab that its shutdown acts on: the timeouts are the profile's. */
interface StoppableLab {
  readonly profile: Profile;
  readonly process: QemuProcess;
  readonly qmp: QmpClient;
  readonly host: Host;
}

/**
 * Stops the guest: system_powerdown (an EPOW the guest turns into an orderly
 * poweroff), escalating to QMP quit and then SIGKILL on timeouts.
 */
export function shutdownLab(
  lab: StoppableLab,
  method: ShutdownMethod,
  progress: Progress,
  opts: { skipRequest?: boolean },
): Promise<ShutdownReport> {
  const t0 = Date.now();
  const escalations: string[] = [];
  const mark = lab.qmp.eventMark();
  let effective: ShutdownMethod = method;
  const timeouts = lab.profile.timeouts;
  return progress.step(`shut the guest down (${method})`, async () => {
    if (method === 'powerdown' && lab.process.running) {
      // skipRequest: the guest was already asked (through its agent) to power off.
      if (!opts.skipRequest)
        await lab.qmp.systemPowerdown().catch((e) => escalations.push(`system_powerdown failed: ${(e as Error).message}`));
      if (!(await lab.process.waitExit(timeouts.powerdownSec * 1000))) {
        escalations.push(`guest did not power off within ${timeouts.powerdownSec} s`);
        effective = 'quit';
      }
    }
    if ((method === 'quit' || effective === 'quit') && lab.process.running) {
      effective = 'quit';
      // quit's reply may race with the socket closing: either is fine.
      await lab.qmp.quit().catch(() => {});
      if (!(await lab.process.waitExit(timeouts.quitSec * 1000))) {
        escalations.push(`QEMU did not exit within ${timeouts.quitSec} s of quit (${await threadsNow(lab)})`);
        effective = 'kill';
      }
    }
    if (method === 'term' && lab.process.running) {
      lab.process.kill('SIGTERM');
      if (!(await lab.process.waitExit(timeouts.quitSec * 1000))) {
        escalations.push(`QEMU did not exit within ${timeouts.quitSec} s of SIGTERM (${await threadsNow(lab)})`);
        effective = 'kill';
      }
    }
    if (lab.process.running) {
      effective = 'kill';
      lab.process.kill('SIGKILL');
    }
    const exit = await lab.process.exited;
    const ev = lab.qmp.connection.recentEvents().find((e) => e.seq >= mark && e.event === 'SHUTDOWN');
    return { requested: method, effective, shutdownEvent: ev?.data, exit, durationMs: exit.at - t0, escalations };
  });
}

/** What QEMU's threads are doing, for a shutdown that took too long: stuck, starved or waiting on the disk. */
async function threadsNow(lab: StoppableLab): Promise<string> {
  const states = await threadStates(lab.host, lab.process.pid).catch(() => []);
  return `its threads then: ${describeThreadStates(states)}`;
}
