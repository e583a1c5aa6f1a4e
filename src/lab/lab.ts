import { readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from '../util/paths.js';
import { buildArgv, type RuntimePaths, type BootImage } from '../qemu/argv.js';
import { createLabCgroup, type LabCgroup } from '../probes/lab-cgroup.js';
import { QemuProcess, type ExitInfo } from '../qemu/qemu-process.js';
import { createRuntimeDir, removeRuntimeDir, writeLabRecord, copyArtifacts } from '../qemu/runtime-dir.js';
import { sweepStaleLabs } from './sweep.js';
import { explainingLines, knownCauseHint } from '../qemu/stderr-diagnosis.js';
import type { Profile } from '../qemu/profile.js';
import { withStagedQemu } from '../qemu/stage-qemu.js';
import { QmpClient } from '../qmp/qmp-client.js';
import { AgentClient } from '../agent/agent-client.js';
import type { Host } from '../host/host.js';
import { describeThreadStates, threadStates } from '../probes/thread-states.js';
import { LocalHost } from '../host/local-host.js';
import { VfioPciBinder, type DeviceBinding } from '../host/vfio-binder.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { silentProgress } from '../util/progress.js';
import { run } from '../util/exec.js';
import {
  coldOnlyReason,
  ramFileArgs,
  runningRamFile,
  findSnapshot,
  qemuVersionOf,
  restoreUnsafeReason,
  publishSnapshot,
  removeSnapshot,
  snapshotKey,
  stagingPath,
  type Snapshot,
  type SnapshotMeta,
} from '../snapshot/snapshot.js';

export interface GuestInitInfo {
  kernelRelease: string;
  machine: string;
  /** Milliseconds from spawn to the init line on the console. */
  spawnToInitMs: number;
}

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

export interface LaunchOptions {
  /** Kernel and initrd; not needed for a profile with guest.boot false. */
  image?: BootImage;
  progress?: Progress;
  /** Extra argv appended after the profile's (tests use -S). */
  extraArgs?: string[];
  runtimeRoot?: string;
  /**
   * The machine QEMU runs on and its vfio-pci devices are bound on: this one
   * (default), or a guest acting as a lab host (an AgentHost).
   */
  host?: Host;
  /**
   * 'use' (the default): start from a saved, booted machine when one matches,
   * else boot cold and save one once the agent answers — where restoring is
   * faithful: QEMU 8.2 or later for a TCG lab (before it the decrementer was not
   * migrated: README, "Labs from a saved, booted machine"), migratable devices.
   * 'off' (`--cold`, TCELAB_SNAPSHOTS=off): boot cold and save nothing.
   */
  snapshots?: 'use' | 'off';
  /** Boot cold, saving nothing, for this reason (a scenario that a restored machine would fail). */
  coldBecause?: string;
}

/** How a lab came up: restored from a snapshot, or booted cold (and why). */
export interface LabStart {
  how: 'restored' | 'cold';
  snapshot?: string;
  /** Why a cold boot (no snapshot yet, --cold, a device that cannot migrate…). */
  why?: string;
  /** Set once a cold lab saved its machine. */
  saved?: string;
}

/** A lab's name from its runtime dir (unique: the dir is made with mkdtemp). */
export function labNameOf(paths: RuntimePaths): string {
  return `tcelab-${paths.dir.split('-').pop()}`;
}

/**
 * One running lab: a QEMU process in its private runtime dir, its QMP client
 * and its console. Whatever happens, dispose() reaps the process; the runtime
 * dir is removed only when the run succeeded, otherwise kept as artifacts.
 */
export class Lab {
  /** Labs alive in this controller process: process-wide metrics are only one lab's when this is 1. */
  static active = 0;
  private agentClient: AgentClient | undefined;
  failed = false;
  /** Host devices bound to vfio-pci for this lab; restored in dispose(). */
  bindings: DeviceBinding[] = [];
  private binder: VfioPciBinder | undefined;
  /** Restored, or cold (and whether it saved its machine). */
  start: LabStart = { how: 'cold' };
  /** A cold lab that saves its machine once the agent answers: the key and what went into it. */
  private saveAs: { key: string; inputs: Record<string, string> } | undefined;
  private restoredMeta: SnapshotMeta | undefined;

  private constructor(
    readonly profile: Profile,
    readonly paths: RuntimePaths,
    readonly process: QemuProcess,
    readonly qmp: QmpClient,
    readonly spawnedAt: number,
    readonly argv: string[],
    readonly host: Host,
    /** The lab's own memory cgroup on this machine, where there is one (probes/lab-cgroup.ts). */
    readonly cgroup: LabCgroup | undefined,
  ) {}

  /** The lab's name: QEMU's -name, and the TCELAB_LAB marker its processes carry. */
  get name(): string {
    return labNameOf(this.paths);
  }

  static async launch(given: Profile, opts: LaunchOptions): Promise<Lab> {
    // A QEMU the profile names as debian:<suite> is staged (once) before anything of the lab exists.
    const profile = await withStagedQemu(given, opts.progress ?? silentProgress, opts.host?.local ?? true);
    try {
      return await Lab.launchOnce(profile, opts, true);
    } catch (err) {
      if (!(err instanceof SnapshotLoadError)) throw err;
      // A snapshot that does not load (a QEMU that changed in a way the key missed): drop it, boot cold.
      await removeSnapshot(err.key);
      (opts.progress ?? silentProgress).info(`snapshot ${err.key} did not load (${err.why}); removed it, booting cold`);
      return Lab.launchOnce(profile, opts, false);
    }
  }

  private static async launchOnce(profile: Profile, opts: LaunchOptions, mayRestore: boolean): Promise<Lab> {
    const progress = opts.progress ?? silentProgress;
    const host = opts.host ?? new LocalHost();
    // A lab inside a guest dies with that guest: only this machine can hold stale labs.
    if (host.local) await sweepStaleLabs(opts.runtimeRoot, host);
    if (profile.guest.boot && !opts.image) {
      throw new TcelabError(
        `launch ${profile.name}`,
        'the profile boots a guest but no guest image was given',
        'run `tcelab guest build` and pass its kernel and initrd',
      );
    }
    const paths = await createRuntimeDir(opts.runtimeRoot, host);
    const labName = labNameOf(paths);
    const argv = [...buildArgv(profile, paths, opts.image, labName), ...(opts.extraArgs ?? [])];
    const plan = await planStart(profile, opts, argv, paths, labName, mayRestore);
    // A restored lab maps the saved RAM privately and waits for its device state (finishRestore sends it); a lab that
    // will save its machine keeps its RAM in a shared tmpfs file, which the save copies.
    if (plan.restore) argv.push(...ramFileArgs(profile.qemu.memoryMiB, plan.restore.ramPath, false), '-incoming', 'defer');
    else if (plan.saveAs) argv.push(...ramFileArgs(profile.qemu.memoryMiB, runningRamFile(labName), true));
    // lab.json is the pid file the stale-lab sweep reads: rewritten whenever it learns something.
    const record: Record<string, unknown> = {
      profile: profile.name,
      host: host.name,
      hostDir: paths.hostDir,
      controllerPid: process.pid,
      startedAt: new Date().toISOString(),
      binary: profile.qemu.binary,
      argv,
      start: plan.start,
    };
    await writeLabRecord(paths, record);
    let qemu: QemuProcess | undefined;
    let cgroup: LabCgroup | undefined;
    // A lab host passes real devices through: bind them to vfio-pci first, give them back in dispose().
    const binder = new VfioPciBinder(host);
    const bindings: DeviceBinding[] = [];
    try {
      for (const d of profile.devices.filter((x) => x.driver === 'vfio-pci' && x.host)) {
        bindings.push(await progress.step(`bind ${d.host} to vfio-pci`, () => binder.bind(d.host!)));
        await writeLabRecord(paths, Object.assign(record, { bindings }));
      }
      cgroup = host.local ? createLabCgroup(labName) : undefined;
      const spawnedAt = Date.now();
      qemu = await QemuProcess.start(host, profile.qemu.binary, argv, paths, labName, cgroup?.procsFile);
      await writeLabRecord(paths, Object.assign(record, { qemuPid: qemu.pid, spawnedAt: new Date(spawnedAt).toISOString(), bindings }));
      const proc = qemu;
      const qmp = await progress.step(
        `start QEMU (${profile.name}${host.local ? '' : ` in the ${host.name}`}) and connect QMP`,
        async () => {
          try {
            return await QmpClient.connect(paths.qmpSocket, { transcriptPath: paths.qmpTranscript, connectTimeoutMs: 15_000, host });
          } catch (err) {
            // QEMU may open its QMP socket and then fail on a later option: its
            // own exit status and stderr are the real explanation.
            const exit = await proc.waitExit(2000);
            if (!exit) throw err;
            throw new TcelabError(
              `start QEMU${host.local ? '' : ` in the ${host.name}`}`,
              `it exited (${exit.signal ?? `code ${exit.code}`}) before QMP was up: ${explainingLines(proc.stderr())}`,
              knownCauseHint(proc.stderr()) ?? 'check the profile and the QEMU version; qemu-stderr.log is in the kept runtime dir',
            );
          }
        },
      );
      const lab = new Lab(profile, paths, qemu, qmp, spawnedAt, argv, host, cgroup);
      lab.bindings = bindings;
      lab.binder = binder;
      lab.start = plan.start;
      lab.saveAs = plan.saveAs;
      if (plan.restore) await lab.finishRestore(plan.restore, progress);
      lab.watchForPanic();
      Lab.active++;
      return lab;
    } catch (err) {
      qemu?.kill('SIGKILL');
      await qemu?.exited;
      await qemu?.console.close();
      cgroup?.remove();
      if (host.local) await rm(runningRamFile(labName), { force: true });
      for (const b of bindings.reverse()) await binder.restore(b).catch(() => {});
      if (!host.local) await host.removeDir(paths.hostDir).catch(() => {});
      if (plan.restore) {
        await removeRuntimeDir(paths).catch(() => {});
        throw new SnapshotLoadError(plan.restore.key, err instanceof TcelabError ? err.why : (err as Error).message);
      }
      throw withArtifacts(err, paths);
    }
  }

  /**
   * A restored lab: the incoming migration loads the saved machine (paused,
   * as it was saved), the console starts with the boot log saved with it, and
   * the machine runs on.
   */
  private async finishRestore(snap: Snapshot, progress: Progress): Promise<void> {
    await progress.step(`restore the booted machine (snapshot ${snap.key})`, async () => {
      // The stream holds the device state only: its RAM is the file QEMU mapped (x-ignore-shared on both ends).
      await this.qmp.migrateSetCapabilities([{ capability: 'x-ignore-shared', state: true }]);
      await this.qmp.migrateIncoming(`exec:cat ${shellQuote(snap.statePath)}`);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const m = await this.qmp.queryMigrate();
        if (m.status === 'completed') break;
        if (m.status === 'failed' || m.status === 'cancelled')
          throw new TcelabError('restore', `the incoming migration ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`);
        const st = await this.qmp.queryStatus();
        if (st.status !== 'inmigrate' && m.status === undefined) break;
        if (Date.now() > deadline) throw new TcelabError('restore', 'the incoming migration did not finish within 60 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      this.process.console.append(
        Buffer.from(
          `${snap.meta.bootConsole}\n[tcelab: restored from snapshot ${snap.key} (saved ${snap.meta.createdAt}); the lines above are its boot log]\n`,
        ),
      );
      await this.qmp.cont();
    });
    this.restoredMeta = snap.meta;
  }

  /** Waits for the guest's /init to report ready on the console (a restored guest was saved past it). */
  async waitForGuestInit(progress: Progress = silentProgress): Promise<GuestInitInfo> {
    if (this.restoredMeta)
      return {
        kernelRelease: this.restoredMeta.kernelRelease,
        machine: this.restoredMeta.machine,
        spawnToInitMs: Date.now() - this.spawnedAt,
      };
    const expected = await expectedBootMs(this.profile.name);
    const m = await progress.step('boot the guest to init', async (update) => {
      // The bar is time against the last boot of this profile; the detail is the console's last line.
      const timer = setInterval(() => {
        const last =
          this.process.console
            .tail(3)
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean)
            .pop() ?? '';
        update(last.replace(/^\[\s*\d+\.\d+\]\s*/, '').slice(0, 60), Math.min(0.95, (Date.now() - this.spawnedAt) / expected));
      }, 250);
      try {
        return await this.process.console.waitFor(/TCELAB-INIT-READY kernel=(\S+) machine=(\S+)/, {
          timeoutMs: this.profile.guest.bootTimeoutSec * 1000,
          what: 'the guest init (TCELAB-INIT-READY)',
        });
      } finally {
        clearInterval(timer);
      }
    });
    const spawnToInitMs = Date.now() - this.spawnedAt;
    await recordBootMs(this.profile.name, spawnToInitMs);
    this.initInfo = { kernelRelease: m[1]!, machine: m[2]!, spawnToInitMs };
    return this.initInfo;
  }

  private initInfo: GuestInitInfo | undefined;

  /** Set when the guest kernel panicked (console line or GUEST_PANICKED). */
  panic: string | undefined;

  /**
   * A panicked guest answers nothing more: fail the agent's pending commands
   * at once instead of letting each run into its timeout.
   */
  private watchForPanic(): void {
    const onPanic = (what: string) => {
      if (this.panic) return;
      this.panic = what;
      this.agentClient?.connection.abort(`the guest kernel panicked (${what})`);
    };
    this.process.console.on('panic', (line: string) => onPanic(line));
    this.qmp.onEvent((e) => {
      if (e.event === 'GUEST_PANICKED') onPanic(`GUEST_PANICKED ${JSON.stringify(e.data)}`);
      // A machine QEMU stopped on an error it cannot recover from (an unknown KVM exit) runs no more.
      if (e.event === 'STOP') {
        void this.qmp.queryStatus().then(
          (st) => {
            if (st.status !== 'internal-error') return;
            const stderr = this.process.stderr();
            const kvm = stderr.split('\n').filter((l) => /^KVM: /.test(l));
            const said = kvm.length ? kvm.slice(-2).join(' | ') : explainingLines(stderr);
            const reason = `internal-error${said ? ` (${said})` : ''}`;
            this.process.console.halt(reason);
            onPanic(`QEMU stopped the machine: ${reason}`);
          },
          () => {},
        );
      }
    });
  }

  /** The guest agent, connected on first use (after init). Fails at once if QEMU exits. */
  async agent(progress: Progress = silentProgress): Promise<AgentClient> {
    if (this.agentClient && !this.agentClient.connection.closed) return this.agentClient;
    const proc = this.process;
    this.agentClient = await progress.step('connect the guest agent', () =>
      Promise.race([
        AgentClient.connect(this.paths.agentSocket, { transcriptPath: this.paths.agentTranscript, host: this.host }),
        proc.exited.then((e) => {
          throw new TcelabError(
            'connect the guest agent',
            `QEMU exited (${e.signal ?? `code ${e.code}`}) first`,
            'see console.log in the artifacts',
          );
        }),
      ]),
    );
    // A restored guest's clock stopped when it was saved: set it to now.
    if (this.restoredMeta) {
      await this.agentClient.setTime(Date.now()).catch((err: Error) => {
        throw new TcelabError('restore', `could not set the guest clock: ${err.message}`);
      });
    }
    if (this.saveAs && this.initInfo) await this.saveMachine(this.saveAs, this.initInfo, progress);
    return this.agentClient;
  }

  /**
   * The first cold lab of a machine saves it, booted, with its agent up: QMP
   * stop, migrate to a file, cont. Later labs of the same machine restore it.
   * A failed save costs this lab nothing but the attempt.
   */
  private async saveMachine(
    saveAs: { key: string; inputs: Record<string, string> },
    init: GuestInitInfo,
    progress: Progress,
  ): Promise<void> {
    this.saveAs = undefined;
    const staged = await stagingPath(saveAs.key);
    const stagedRam = `${staged}.ram`;
    try {
      await progress.step(`save the booted machine for later labs (snapshot ${saveAs.key})`, async () => {
        await this.qmp.stop();
        try {
          // The device state into the stream; the RAM, stopped and consistent, by copying its file (holes stay holes).
          await this.qmp.migrateSetCapabilities([{ capability: 'x-ignore-shared', state: true }]);
          await this.qmp.migrate(`exec:cat > ${shellQuote(staged)}`);
          const deadline = Date.now() + 120_000;
          for (;;) {
            const m = await this.qmp.queryMigrate();
            if (m.status === 'completed') break;
            if (m.status === 'failed' || m.status === 'cancelled' || Date.now() > deadline) {
              throw new TcelabError(
                'save the machine',
                `migration ${m.status ?? 'timed out'}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`,
              );
            }
            await new Promise((r) => setTimeout(r, 20));
          }
          await run('cp', ['--sparse=always', runningRamFile(this.name), stagedRam], { what: 'copy the guest RAM into the snapshot' });
        } finally {
          await this.qmp.cont();
        }
        const snap = await publishSnapshot(staged, stagedRam, {
          key: saveAs.key,
          format: 0,
          createdAt: new Date().toISOString(),
          profile: this.profile.name,
          kernelRelease: init.kernelRelease,
          machine: init.machine,
          coldSpawnToInitMs: init.spawnToInitMs,
          bootConsole: this.process.console.tail(100_000),
          inputs: saveAs.inputs,
        });
        if (snap) this.start = { ...this.start, saved: snap.key };
      });
    } catch (err) {
      await rm(staged, { force: true }).catch(() => {});
      await rm(stagedRam, { force: true }).catch(() => {});
      progress.info(`(could not save a snapshot: ${(err as Error).message}; later labs boot cold too)`);
    }
  }

  /**
   * Stops the guest: system_powerdown (an EPOW the guest turns into an orderly
   * poweroff), escalating to QMP quit and then SIGKILL on timeouts.
   */
  async shutdown(
    method: ShutdownMethod = 'powerdown',
    progress: Progress = silentProgress,
    opts: { skipRequest?: boolean } = {},
  ): Promise<ShutdownReport> {
    const t0 = Date.now();
    const escalations: string[] = [];
    const mark = this.qmp.eventMark();
    let effective: ShutdownMethod = method;
    const timeouts = this.profile.timeouts;
    return progress.step(`shut the guest down (${method})`, async () => {
      if (method === 'powerdown' && this.process.running) {
        // skipRequest: the guest was already asked (through its agent) to power off.
        if (!opts.skipRequest)
          await this.qmp.systemPowerdown().catch((e) => escalations.push(`system_powerdown failed: ${(e as Error).message}`));
        if (!(await this.process.waitExit(timeouts.powerdownSec * 1000))) {
          escalations.push(`guest did not power off within ${timeouts.powerdownSec} s`);
          effective = 'quit';
        }
      }
      if ((method === 'quit' || effective === 'quit') && this.process.running) {
        effective = 'quit';
        // quit's reply may race with the socket closing: either is fine.
        await this.qmp.quit().catch(() => {});
        if (!(await this.process.waitExit(timeouts.quitSec * 1000))) {
          escalations.push(`QEMU did not exit within ${timeouts.quitSec} s of quit (${await this.threadsNow()})`);
          effective = 'kill';
        }
      }
      if (method === 'term' && this.process.running) {
        this.process.kill('SIGTERM');
        if (!(await this.process.waitExit(timeouts.quitSec * 1000))) {
          escalations.push(`QEMU did not exit within ${timeouts.quitSec} s of SIGTERM (${await this.threadsNow()})`);
          effective = 'kill';
        }
      }
      if (this.process.running) {
        effective = 'kill';
        this.process.kill('SIGKILL');
      }
      const exit = await this.process.exited;
      const ev = this.qmp.connection.recentEvents().find((e) => e.seq >= mark && e.event === 'SHUTDOWN');
      return { requested: method, effective, shutdownEvent: ev?.data, exit, durationMs: exit.at - t0, escalations };
    });
  }

  /** What QEMU's threads are doing, for a shutdown that took too long: stuck, starved or waiting on the disk. */
  private async threadsNow(): Promise<string> {
    const states = await threadStates(this.host, this.process.pid).catch(() => []);
    return `its threads then: ${describeThreadStates(states)}`;
  }

  private disposing: Promise<string | undefined> | undefined;

  /**
   * Reaps QEMU (SIGKILL if still running), closes the connections, and removes
   * the runtime dir, unless the run failed: then it is kept and its path is returned.
   */
  dispose(opts: { artifactsTo?: string } = {}): Promise<string | undefined> {
    // Concurrent callers (an interrupt handler and the normal path) share one teardown.
    this.disposing ??= this.doDispose(opts);
    return this.disposing;
  }

  private async doDispose(opts: { artifactsTo?: string }): Promise<string | undefined> {
    Lab.active--;
    if (this.process.running) {
      this.process.kill('SIGKILL');
    }
    await this.process.exited;
    this.cgroup?.remove();
    await this.qmp.close().catch(() => {});
    await this.agentClient?.close().catch(() => {});
    await this.process.console.close();
    // The RAM file of a lab that saved (or meant to save) its machine: QEMU is gone, so is what it held.
    if (this.host.local) await rm(runningRamFile(this.name), { force: true });
    // A kept runtime dir is artifacts: the dead sockets go. QEMU's own are on its host:
    // here, or in the guest's private dir, which goes whole (unless the guest went first).
    await rm(join(this.paths.dir, 'control.sock'), { force: true });
    if (this.host.local) for (const sock of [this.paths.qmpSocket, this.paths.agentSocket]) await rm(sock, { force: true });
    else if (!this.host.gone) await this.host.removeDir(this.paths.hostDir).catch(() => {});
    // A guest acting as the host took its devices and directories with it.
    if (this.host.gone) this.bindings = [];
    for (const b of this.bindings.reverse()) {
      await this.binder!.restore(b).catch((err) => {
        this.failed = true;
        process.stderr.write(`tcelab: could not give ${b.device} back to ${b.previousDriver ?? 'no driver'}: ${(err as Error).message}\n`);
      });
    }
    if (opts.artifactsTo) await copyArtifacts(this.paths, opts.artifactsTo).catch(() => {});
    if (this.failed) return this.paths.dir;
    await removeRuntimeDir(this.paths);
    return undefined;
  }
}

const bootTimesFile = () => join(cacheDir(), 'boot-times.json');

async function expectedBootMs(profile: string): Promise<number> {
  try {
    const t = JSON.parse(await readFile(bootTimesFile(), 'utf8')) as Record<string, number>;
    return t[profile] ?? 8000;
  } catch {
    return 8000;
  }
}

/** Remembers how long a profile took to boot, so the next boot's bar means something. */
async function recordBootMs(profile: string, ms: number): Promise<void> {
  try {
    let t: Record<string, number> = {};
    try {
      t = JSON.parse(await readFile(bootTimesFile(), 'utf8')) as Record<string, number>;
    } catch {}
    t[profile] = ms;
    await mkdir(cacheDir(), { recursive: true });
    await writeFile(bootTimesFile(), `${JSON.stringify(t)}\n`);
  } catch {
    // Best effort: a read-only cache only costs the bar its accuracy.
  }
}

/** A restore that failed: the launch drops the snapshot and boots cold. */
class SnapshotLoadError extends Error {
  constructor(
    readonly key: string,
    readonly why: string,
  ) {
    super(`snapshot ${key} did not load: ${why}`);
  }
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Restore, cold boot that saves, or cold boot (and why), for one launch. */
async function planStart(
  profile: Profile,
  opts: LaunchOptions,
  argv: string[],
  paths: RuntimePaths,
  labName: string,
  mayRestore: boolean,
): Promise<{
  start: LabStart;
  restore?: Snapshot;
  saveAs?: { key: string; inputs: Record<string, string> };
}> {
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

function withArtifacts(err: unknown, paths: RuntimePaths): unknown {
  if (err instanceof TcelabError && !err.hint?.includes(paths.dir)) {
    return new TcelabError(err.what, err.why, `${err.hint ? `${err.hint}; ` : ''}artifacts kept in ${paths.dir}`, { cause: err });
  }
  return err;
}
