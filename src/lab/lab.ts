import { rm } from 'node:fs/promises';
import { buildArgv, type RuntimePaths, type BootImage } from '../qemu/argv.js';
import { createLabCgroup, type LabCgroup } from '../probes/lab-cgroup.js';
import { QemuProcess } from '../qemu/qemu-process.js';
import { createRuntimeDir, removeRuntimeDir, writeLabRecord, copyArtifacts } from '../qemu/runtime-dir.js';
import { sweepStaleLabs } from './sweep.js';
import { explainingLines, knownCauseHint } from '../qemu/stderr-diagnosis.js';
import type { Profile } from '../qemu/profile.js';
import { withStagedQemu } from '../qemu/stage-qemu.js';
import { QmpClient } from '../qmp/qmp-client.js';
import type { AgentClient } from '../agent/agent-client.js';
import type { Host } from '../host/host.js';
import { LocalHost } from '../host/local-host.js';
import { VfioPciBinder, type DeviceBinding } from '../host/vfio-binder.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { silentProgress } from '../util/progress.js';
import { removeSnapshot, runningRamFile, type Snapshot, type SnapshotMeta } from '../snapshot/snapshot.js';
import {
  type LabStart,
  planArgs,
  planStart,
  restoreMachine,
  type SaveAs,
  saveMachine,
  type SnapshotFaults,
  SnapshotLoadError,
} from './lab-snapshot.js';
import { type GuestInitInfo, waitForInitLine } from './guest-init.js';
import { watchForPanic } from './panic-watch.js';
import { connectAgent } from './agent-connect.js';
import { writeBackConfigs } from './device-config.js';
import { loadModulesAfterSave } from './modules-after-save.js';
import { type ShutdownMethod, type ShutdownReport, shutdownLab } from './shutdown.js';
import { releaseHoldings } from './teardown.js';

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
  /**
   * A restored lab leaves the devices QEMU does not migrate as QEMU restored them (a reset configuration space):
   * why (a seeded fault, which proves that a check sees the difference).
   */
  skipConfigRestore?: string;
  /**
   * Seeded snapshot faults that prove the restore's interrupt check (lab-snapshot.ts): a cold lab saves its machine at
   * an instant with an interrupt signalled to a CPU.
   */
  snapshotFaults?: SnapshotFaults;
}

/** What a scenario may ask of how its lab starts. */
export type LabStartOptions = Pick<LaunchOptions, 'coldBecause' | 'skipConfigRestore'>;

/** A lab's name from its runtime dir (unique: the dir is made with mkdtemp). */
export function labNameOf(paths: RuntimePaths): string {
  return `tcelab-${paths.dir.split('-').pop()}`;
}

/**
 * One running lab: a QEMU process in its private runtime dir, its QMP client
 * and its console. Whatever happens, dispose() reaps the process; the runtime
 * dir is removed only when the run succeeded, otherwise kept as artifacts.
 * Its parts each do one job: lab-snapshot.ts (restore or save the booted machine),
 * guest-init.ts (the wait for init), panic-watch.ts, agent-connect.ts, shutdown.ts,
 * teardown.ts; the Lab launches QEMU and wires them together.
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
  private saveAs: SaveAs | undefined;
  private restoredMeta: SnapshotMeta | undefined;
  /** A restored lab's devices QEMU does not migrate: their saved configuration, until it is written back (agent()). */
  private configsToRestore: SnapshotMeta['deviceConfigs'] = [];
  private skipConfigRestore: string | undefined;
  private snapshotFaults: SnapshotFaults = {};

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
    argv.push(...planArgs(profile, plan, labName));
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
            return await QmpClient.connect(paths.qmpSocket, {
              transcriptPath: paths.qmpTranscript,
              connectTimeoutMs: 15_000,
              greetingTimeoutMs: QEMU_INIT_CEILING_MS,
              host,
            });
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
      lab.skipConfigRestore = opts.skipConfigRestore;
      lab.snapshotFaults = opts.snapshotFaults ?? {};
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

  /** A restored lab: the saved machine loaded and running on (lab-snapshot.ts); its init and agent came with it. */
  private async finishRestore(snap: Snapshot, progress: Progress): Promise<void> {
    await restoreMachine(this, snap, progress);
    this.restoredMeta = snap.meta;
    this.configsToRestore = snap.meta.deviceConfigs;
  }

  /** Waits for the guest's /init to report ready on the console (a restored guest was saved past it). */
  async waitForGuestInit(progress: Progress = silentProgress): Promise<GuestInitInfo> {
    if (this.restoredMeta)
      return {
        kernelRelease: this.restoredMeta.kernelRelease,
        machine: this.restoredMeta.machine,
        spawnToInitMs: Date.now() - this.spawnedAt,
      };
    this.initInfo = await waitForInitLine(this, progress);
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
    watchForPanic(this.process, this.qmp, (what) => {
      if (this.panic) return;
      this.panic = what;
      this.agentClient?.connection.abort(`the guest kernel panicked (${what})`);
    });
  }

  /** The guest agent, connected on first use (after init). Fails at once if QEMU exits. */
  async agent(progress: Progress = silentProgress): Promise<AgentClient> {
    if (this.agentClient && !this.agentClient.connection.closed) return this.agentClient;
    this.agentClient = await connectAgent(this, progress);
    // A restored guest's clock stopped when it was saved: set it to now.
    if (this.restoredMeta) {
      await this.agentClient.setTime(Date.now()).catch((err: Error) => {
        throw new TcelabError('restore', `could not set the guest clock: ${err.message}`);
      });
    }
    // Before anything uses them, the devices QEMU does not migrate get the configuration they had (once).
    if (this.configsToRestore.length) {
      const saved = this.configsToRestore;
      this.configsToRestore = [];
      if (this.skipConfigRestore) this.start = { ...this.start, configsNotRestored: this.skipConfigRestore };
      else {
        const configsRestored = await writeBackConfigs(this.agentClient, saved, progress).catch(async (err: unknown) => {
          // The same snapshot would fail the same way: the next lab boots cold and saves another.
          if (this.start.snapshot) await removeSnapshot(this.start.snapshot);
          throw err instanceof TcelabError
            ? new TcelabError(err.what, err.why, `${err.hint ?? ''}${err.hint ? '; ' : ''}its snapshot was removed`, { cause: err })
            : err;
        });
        this.start = { ...this.start, configsRestored };
      }
    }
    // The first cold lab of a machine saves it now, booted with its agent up (once: saveAs is cleared first).
    if (this.saveAs && this.initInfo) {
      const saveAs = this.saveAs;
      this.saveAs = undefined;
      const saved = await saveMachine(this, this.agentClient, saveAs, this.initInfo, progress, this.snapshotFaults);
      if (saved) this.start = { ...this.start, saved };
    }
    // Modules a snapshot must not hold loaded (modules-after-save.ts): loaded now, after the save or the restore (once).
    if (!this.modulesLoaded) {
      this.modulesLoaded = true;
      await loadModulesAfterSave(this.agentClient, this.profile, progress);
    }
    return this.agentClient;
  }

  private modulesLoaded = false;

  /**
   * Stops the guest: system_powerdown (an EPOW the guest turns into an orderly
   * poweroff), escalating to QMP quit and then SIGKILL on timeouts (shutdown.ts).
   */
  shutdown(
    method: ShutdownMethod = 'powerdown',
    progress: Progress = silentProgress,
    opts: { skipRequest?: boolean } = {},
  ): Promise<ShutdownReport> {
    return shutdownLab(this, method, progress, opts);
  }

  /**
   * The whole teardown of a lab, whoever ends it: QMP quit if QEMU still runs (escalating to SIGKILL as shutdown
   * does), then dispose(): QEMU reaped, connections closed, devices given back, the artifacts copied to
   * `artifactsTo`, the runtime dir removed or, when the lab failed (`failed` marks it so), kept and its path returned.
   */
  async close(opts: { failed?: boolean; artifactsTo?: string; progress?: Progress } = {}): Promise<string | undefined> {
    if (opts.failed) this.failed = true;
    // A teardown already under way (an interrupt's) reaps QEMU itself: no quit racing it.
    if (this.process.running && !this.disposing) await this.shutdown('quit', opts.progress).catch(() => {});
    return this.dispose({ artifactsTo: opts.artifactsTo });
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
    const allBack = await releaseHoldings({
      name: this.name,
      paths: this.paths,
      process: this.process,
      qmp: this.qmp,
      agent: this.agentClient,
      host: this.host,
      cgroup: this.cgroup,
      bindings: this.bindings,
      binder: this.binder,
    });
    // A device left bound to vfio-pci is a failure of the lab's own.
    if (!allBack) this.failed = true;
    if (opts.artifactsTo) await copyArtifacts(this.paths, opts.artifactsTo).catch(() => {});
    // Read last: an interrupt handler may mark the lab failed while it is being torn down.
    if (this.failed) return this.paths.dir;
    await removeRuntimeDir(this.paths);
    return undefined;
  }
}

/**
 * How long QEMU may take from its QMP socket to its answer to qmp_capabilities: its main loop answers only once machine
 * init is done, which with mem-lock=on includes locking all guest RAM. On a loaded machine (a suite beside a kernel
 * build, 2026-12-07) that took more than 10 s for 1 GiB and four labs failed on a fixed 10 s; the wait is on the reply
 * itself (QEMU dying closes the socket and ends it at once), this is only the ceiling for a QEMU that hangs.
 */
const QEMU_INIT_CEILING_MS = 120_000;

function withArtifacts(err: unknown, paths: RuntimePaths): unknown {
  if (err instanceof TcelabError && !err.hint?.includes(paths.dir)) {
    return new TcelabError(err.what, err.why, `${err.hint ? `${err.hint}; ` : ''}artifacts kept in ${paths.dir}`, { cause: err });
  }
  return err;
}
