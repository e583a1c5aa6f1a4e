import { rm } from 'node:fs/promises';
import type { BootImage, RuntimePaths } from '../qemu/argv.js';
import type { GuestConsole } from '../qemu/console.js';
import type { Profile } from '../qemu/profile.js';
import type { Host } from '../host/host.js';
import type { QmpClient } from '../qmp/qmp-client.js';
import { TcelabError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { PollTimeoutError, pollUntil } from '../util/poll.js';
import type { Progress } from '../util/progress.js';
import {
  coldOnlyReason,
  ramFileArgs,
  runningRamFile,
  findSnapshot,
  qemuVersionOf,
  restoreUnsafeReason,
  publishSnapshot,
  snapshotKey,
  stagingPath,
  type Snapshot,
} from '../snapshot/snapshot.js';
import type { GuestInitInfo } from './guest-init.js';
import type { AgentClient } from '../agent/agent-client.js';
import { readUnmigratedConfigs, type RestoredConfig } from './device-config.js';
import { describeSignalled, type InterruptState, parseInterruptState } from '../snapshot/interrupt-state.js';

/** How a lab came up: restored from a snapshot, or booted cold (and why). */
export interface LabStart {
  how: 'restored' | 'cold';
  snapshot?: string;
  /** Why a cold boot (no snapshot yet, --cold, a device that cannot migrate…). */
  why?: string;
  /** Set once a cold lab saved its machine. */
  saved?: string;
  /** A restored lab: the devices QEMU does not migrate whose PCI configuration it wrote back (device-config.ts). */
  configsRestored?: RestoredConfig[];
  /** A restored lab that left their configuration as QEMU restored it (reset): why (a seeded fault). */
  configsNotRestored?: string;
}

/** A cold lab that saves its machine once the agent answers: the key and what went into it. */
export interface SaveAs {
  key: string;
  inputs: Record<string, string>;
}

/** What one launch does about snapshots: how the lab starts, the snapshot it restores, or the key it saves under. */
export interface StartPlan {
  start: LabStart;
  restore?: Snapshot;
  saveAs?: SaveAs;
}

/** Restore, cold boot that saves, or cold boot (and why), for one launch. */
export async function planStart(
  profile: Profile,
  opts: { snapshots?: 'use' | 'off'; coldBecause?: string; host?: Host; extraArgs?: string[]; image?: BootImage },
  argv: string[],
  paths: RuntimePaths,
  labName: string,
  mayRestore: boolean,
): Promise<StartPlan> {
  const want = opts.snapshots ?? (process.env.TCELAB_SNAPSHOTS === 'off' ? 'off' : 'use');
  if (want === 'off') return { start: { how: 'cold', why: 'a cold boot was asked for (--cold)' } };
  if (opts.coldBecause) return { start: { how: 'cold', why: opts.coldBecause } };
  if (opts.host && !opts.host.local) return { start: { how: 'cold', why: 'an inner lab (its QEMU runs in a guest)' } };
  const reason = coldOnlyReason(profile, opts.extraArgs) ?? restoreUnsafeReason(profile, qemuVersionOf(profile.qemu.binary));
  if (reason || !opts.image) return { start: { how: 'cold', why: reason ?? 'no guest image' } };
  const { key, inputs } = snapshotKey(profile, argv, paths, labName, opts.image);
  const snap = mayRestore ? await findSnapshot(key) : undefined;
  if (snap) return { start: { how: 'restored', snapshot: key }, restore: snap };
  return {
    start: { how: 'cold', why: mayRestore ? 'no snapshot of this machine yet (this lab saves one)' : 'its snapshot did not load' },
    saveAs: { key, inputs },
  };
}

/**
 * The argv a plan adds. A restored lab maps the saved RAM privately and waits for its device state (restoreMachine
 * sends it); a lab that will save its machine keeps its RAM in a shared tmpfs file, which the save copies.
 */
export function planArgs(profile: Profile, plan: StartPlan, labName: string): string[] {
  if (plan.restore) return [...ramFileArgs(profile.qemu.memoryMiB, plan.restore.ramPath, false), '-incoming', 'defer'];
  if (plan.saveAs) return ramFileArgs(profile.qemu.memoryMiB, runningRamFile(labName), true);
  return [];
}

/** A restore that failed: the launch drops the snapshot and boots cold. */
export class SnapshotLoadError extends Error {
  constructor(
    readonly key: string,
    readonly why: string,
  ) {
    super(`snapshot ${key} did not load: ${why}`);
  }
}

/** Seeded faults of saves (each says why it is seeded), proving the restore's interrupt check. */
export interface SnapshotFaults {
  /** Save at an instant with an interrupt signalled to a CPU (provoked by agent requests), instead of one without. */
  saveWithInterruptSignalled?: string;
}

/** The parts of a running lab that a save or a restore drives. */
interface MigratingLab {
  readonly qmp: QmpClient;
  readonly process: { readonly console: GuestConsole };
}

/** The stream holds the device state only: the RAM is the file QEMU mapped (x-ignore-shared on both ends). */
const IGNORE_SHARED = [{ capability: 'x-ignore-shared', state: true }];

/**
 * A restored lab: the incoming migration loads the saved machine (paused,
 * as it was saved), the console starts with the boot log saved with it, and
 * the machine runs on.
 */
export async function restoreMachine(lab: MigratingLab, snap: Snapshot, progress: Progress): Promise<void> {
  await progress.step(`restore the booted machine (snapshot ${snap.key})`, async () => {
    await lab.qmp.migrateSetCapabilities(IGNORE_SHARED);
    await lab.qmp.migrateIncoming(`exec:cat ${shellQuote(snap.statePath)}`);
    await waitForMigration(lab.qmp, 'incoming', 'restore', 60_000);
    // A snapshot saved with an interrupt signalled (before saves waited for an instant without one) restores a guest
    // that never takes an external interrupt again: refused here, it is dropped and the lab boots cold and saves anew.
    const state = await readInterruptState(lab.qmp);
    if (state.signalled.length)
      throw new TcelabError(
        'restore',
        `it was saved with an interrupt signalled to a CPU and not yet taken, which QEMU does not raise again after a restore: ${describeSignalled(state)}`,
      );
    lab.process.console.append(
      Buffer.from(
        `${snap.meta.bootConsole}\n[tcelab: restored from snapshot ${snap.key} (saved ${snap.meta.createdAt}); the lines above are its boot log]\n`,
      ),
    );
    await lab.qmp.cont();
  });
}

/**
 * The first cold lab of a machine saves it, booted, with its agent up: the PCI configuration of the devices QEMU
 * does not migrate read through the agent, then QMP stop, migrate to a file, cont. Later labs of the same machine
 * restore it. A failed save costs this lab nothing but the attempt. Resolves with the key of the saved snapshot, if
 * one was published.
 */
export async function saveMachine(
  lab: MigratingLab & { readonly name: string; readonly profile: Profile },
  agent: AgentClient,
  saveAs: SaveAs,
  init: GuestInitInfo,
  progress: Progress,
  faults: SnapshotFaults = {},
): Promise<string | undefined> {
  const staged = await stagingPath(saveAs.key);
  const stagedRam = `${staged}.ram`;
  try {
    return await progress.step(`save the booted machine for later labs (snapshot ${saveAs.key})`, async () => {
      const deviceConfigs = await readUnmigratedConfigs(agent, lab.profile);
      const state = faults.saveWithInterruptSignalled
        ? await stopAtInstant(lab.qmp, true, () => agent.info().then(() => {}))
        : await stopAtInstant(lab.qmp, false);
      if (faults.saveWithInterruptSignalled)
        progress.info(`(saving with an interrupt signalled, ${faults.saveWithInterruptSignalled}: ${describeSignalled(state)})`);
      try {
        // The device state into the stream; the RAM, stopped and consistent, by copying its file (holes stay holes).
        await lab.qmp.migrateSetCapabilities(IGNORE_SHARED);
        await lab.qmp.migrate(`exec:cat > ${shellQuote(staged)}`);
        await waitForMigration(lab.qmp, 'outgoing', 'save the machine', 120_000);
        await run('cp', ['--sparse=always', runningRamFile(lab.name), stagedRam], { what: 'copy the guest RAM into the snapshot' });
      } finally {
        await lab.qmp.cont();
      }
      const snap = await publishSnapshot(staged, stagedRam, {
        key: saveAs.key,
        format: 0,
        createdAt: new Date().toISOString(),
        profile: lab.profile.name,
        kernelRelease: init.kernelRelease,
        machine: init.machine,
        coldSpawnToInitMs: init.spawnToInitMs,
        bootConsole: lab.process.console.tail(100_000),
        inputs: saveAs.inputs,
        deviceConfigs,
      });
      return snap?.key;
    });
  } catch (err) {
    await rm(staged, { force: true }).catch(() => {});
    await rm(stagedRam, { force: true }).catch(() => {});
    progress.info(`(could not save a snapshot: ${(err as Error).message}; later labs boot cold too)`);
    return undefined;
  }
}

/**
 * Stops the machine at an instant when no interrupt is signalled to a CPU and not yet taken (interrupt-state.ts): the
 * agent's last answer has just been read, so its virtio interrupt is often in flight. Each try that finds one runs the
 * machine on and stops it again; the guest takes a signalled interrupt within a few instructions. A controller whose
 * `info pic` is not read (an in-kernel irqchip migrates its own state) stops at once. The seeded fault wants the
 * opposite instant, and provokes it with agent requests (a stop just after an answer).
 */
async function stopAtInstant(qmp: QmpClient, signalled: boolean, provoke?: () => Promise<void>): Promise<InterruptState> {
  let last: string | undefined;
  return pollUntil(
    signalled
      ? 'an instant with an interrupt signalled to a CPU (seeded fault)'
      : 'an instant with no interrupt signalled to a CPU, to save the machine',
    async () => {
      await provoke?.();
      await qmp.stop();
      const state = await readInterruptState(qmp).catch(async (err: unknown) => {
        await qmp.cont();
        throw err;
      });
      const hasSignalled = state.signalled.length > 0;
      if (hasSignalled === signalled) return state;
      last = hasSignalled ? describeSignalled(state) : `nothing signalled (${state.controller})`;
      await qmp.cont();
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: signalled ? 0 : 20, lastSeen: () => last },
  );
}

/** The machine's interrupt state as HMP `info pic` prints it (interrupt-state.ts). */
async function readInterruptState(qmp: QmpClient): Promise<InterruptState> {
  return parseInterruptState(await qmp.humanMonitorCommand('info pic', 30_000));
}

/**
 * Follows a migration to its end (query-migrate), for the save and the restore alike: throws, naming `what`, when it
 * failed or was cancelled or did not finish within `timeoutMs`. An incoming migration can be over before query-migrate
 * reports any status: it is done once the machine is no longer in 'inmigrate'.
 */
async function waitForMigration(qmp: QmpClient, direction: 'incoming' | 'outgoing', what: string, timeoutMs: number): Promise<void> {
  let last = 'no status';
  await pollUntil(
    `the ${direction} migration to finish`,
    async () => {
      const m = await qmp.queryMigrate();
      last = `status ${m.status ?? 'none reported'}`;
      if (m.status === 'completed') return true;
      if (m.status === 'failed' || m.status === 'cancelled')
        throw new TcelabError(what, `the ${direction} migration ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`);
      if (direction === 'incoming' && m.status === undefined && (await qmp.queryStatus()).status !== 'inmigrate') return true;
      return undefined;
    },
    { timeoutMs, intervalMs: 20, lastSeen: () => last },
  ).catch((err: unknown) => {
    // A restore that gave up is reported by its why (SnapshotLoadError): the why says which migration.
    if (err instanceof PollTimeoutError)
      throw new TcelabError(what, `the ${direction} migration did not finish: ${err.why}`, undefined, { cause: err });
    throw err;
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
