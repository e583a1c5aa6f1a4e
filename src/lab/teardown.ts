import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentClient } from '../agent/agent-client.js';
import type { Host } from '../host/host.js';
import type { DeviceBinding, VfioPciBinder } from '../host/vfio-binder.js';
import type { LabCgroup } from '../probes/lab-cgroup.js';
import type { RuntimePaths } from '../qemu/argv.js';
import type { QemuProcess } from '../qemu/qemu-process.js';
import type { QmpClient } from '../qmp/qmp-client.js';
import { runningRamFile } from '../snapshot/snapshot.js';

/** What a lab holds until its teardown: QEMU and its connections, its cgroup, RAM file and sockets, its devices. */
export interface LabHoldings {
  name: string;
  paths: RuntimePaths;
  process: QemuProcess;
  qmp: QmpClient;
  agent: AgentClient | undefined;
  host: Host;
  cgroup: LabCgroup | undefined;
  /** Host devices bound to vfio-pci for the lab, and the binder that gives them back. */
  bindings: DeviceBinding[];
  binder: VfioPciBinder | undefined;
}

/**
 * Reaps QEMU (SIGKILL if still running), closes the connections, removes what the lab held on its host and gives
 * its devices back to their drivers. False when a device could not be given back: the lab then counts as failed.
 */
export async function releaseHoldings(h: LabHoldings): Promise<boolean> {
  if (h.process.running) {
    h.process.kill('SIGKILL');
  }
  await h.process.exited;
  h.cgroup?.remove();
  await h.qmp.close().catch(() => {});
  await h.agent?.close().catch(() => {});
  await h.process.console.close();
  // The RAM file of a lab that saved (or meant to save) its machine: QEMU is gone, so is what it held.
  if (h.host.local) await rm(runningRamFile(h.name), { force: true });
  // A kept runtime dir is artifacts: the dead sockets go. QEMU's own are on its host:
  // here, or in the guest's private dir, which goes whole (unless the guest went first).
  await rm(join(h.paths.dir, 'control.sock'), { force: true });
  if (h.host.local) for (const sock of [h.paths.qmpSocket, h.paths.agentSocket]) await rm(sock, { force: true });
  else if (!h.host.gone) await h.host.removeDir(h.paths.hostDir).catch(() => {});
  // A guest acting as the host took its devices and directories with it.
  const bindings = h.host.gone ? [] : h.bindings;
  let allBack = true;
  for (const b of [...bindings].reverse()) {
    await h.binder!.restore(b).catch((err) => {
      allBack = false;
      process.stderr.write(`tcelab: could not give ${b.device} back to ${b.previousDriver ?? 'no driver'}: ${(err as Error).message}\n`);
    });
  }
  return allBack;
}
