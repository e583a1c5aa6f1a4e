import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeRoot } from '../util/paths.js';
import type { Host } from '../host/host.js';
import { runningRamFile } from '../snapshot/snapshot.js';
import { VfioPciBinder, type DeviceBinding } from '../host/vfio-binder.js';

/**
 * Labs whose controller died without tearing down (SIGKILL, a crash, a power
 * cut): their runtime dir and lab.json (pid file) are still there. At the next
 * start, tcelab kills a QEMU that is somehow still alive, gives bound devices
 * back to their drivers, and keeps the dir as artifacts (stale-lab-*), sockets removed.
 */
export interface SweptLab {
  dir: string;
  keptAs: string;
  controllerPid?: number;
  qemuKilled: boolean;
  restored: string[];
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isQemu(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some((a) => a.endsWith('qemu-system-ppc64') || /qemu-system-/.test(a));
}

export async function sweepStaleLabs(root = runtimeRoot(), host?: Host): Promise<SweptLab[]> {
  if (!existsSync(root)) return [];
  const swept: SweptLab[] = [];
  for (const name of await readdir(root)) {
    if (!name.startsWith('lab-')) continue;
    const dir = join(root, name);
    let record: { controllerPid?: number; qemuPid?: number; bindings?: DeviceBinding[] };
    try {
      record = JSON.parse(await readFile(join(dir, 'lab.json'), 'utf8'));
    } catch {
      continue; // Being created right now by another controller, or not ours.
    }
    if (alive(record.controllerPid)) continue;
    // Claimed by renaming it first: labs starting at once (run --all --jobs 2) sweep at once, and only one of them may
    // take a stale lab (the other's readdir of a dir renamed under it failed the lab's start: seen in the slow checks).
    const keptAs = join(root, `stale-${name}`);
    const claimed = await rename(dir, keptAs).then(
      () => true,
      () => false,
    );
    if (!claimed) continue;
    let qemuKilled = false;
    if (record.qemuPid && alive(record.qemuPid) && (await isQemu(record.qemuPid))) {
      process.kill(record.qemuPid, 'SIGKILL');
      qemuKilled = true;
    }
    const restored: string[] = [];
    if (host && record.bindings?.length) {
      const binder = new VfioPciBinder(host);
      for (const b of record.bindings) {
        await binder.restore(b).then(
          () => restored.push(b.device),
          () => {},
        );
      }
    }
    for (const f of await readdir(keptAs)) if (f.endsWith('.sock')) await rm(join(keptAs, f), { force: true });
    // The tmpfs RAM file of a lab that was to save its machine (lab-XXXX → tcelab-XXXX-ram): memory nobody frees else.
    await rm(runningRamFile(`tcelab-${name.split('-').pop()}`), { force: true });
    swept.push({ dir, keptAs, controllerPid: record.controllerPid, qemuKilled, restored });
  }
  return swept;
}
