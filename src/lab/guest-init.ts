import type { Profile } from '../qemu/profile.js';
import type { QemuProcess } from '../qemu/qemu-process.js';
import type { Progress } from '../util/progress.js';
import { expectedBootMs, recordBootMs } from './boot-times.js';

export interface GuestInitInfo {
  kernelRelease: string;
  machine: string;
  /** Milliseconds from spawn to the init line on the console. */
  spawnToInitMs: number;
}

/** Waits for the guest's /init to report ready on the console of a lab that boots cold; remembers how long it took. */
export async function waitForInitLine(
  lab: { readonly profile: Profile; readonly process: QemuProcess; readonly spawnedAt: number },
  progress: Progress,
): Promise<GuestInitInfo> {
  const expected = await expectedBootMs(lab.profile.name);
  const m = await progress.step('boot the guest to init', async (update) => {
    // The bar is time against the last boot of this profile; the detail is the console's last line.
    const timer = setInterval(() => {
      const last =
        lab.process.console
          .tail(3)
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
          .pop() ?? '';
      update(last.replace(/^\[\s*\d+\.\d+\]\s*/, '').slice(0, 60), Math.min(0.95, (Date.now() - lab.spawnedAt) / expected));
    }, 250);
    try {
      return await lab.process.console.waitFor(/TCELAB-INIT-READY kernel=(\S+) machine=(\S+)/, {
        timeoutMs: lab.profile.guest.bootTimeoutSec * 1000,
        what: 'the guest init (TCELAB-INIT-READY)',
      });
    } finally {
      clearInterval(timer);
    }
  });
  const spawnToInitMs = Date.now() - lab.spawnedAt;
  await recordBootMs(lab.profile.name, spawnToInitMs);
  return { kernelRelease: m[1]!, machine: m[2]!, spawnToInitMs };
}
