import { join } from 'node:path';
import { loadProfile } from '../qemu/profile.js';
import { Lab } from '../lab/lab.js';
import { StderrProgress } from '../util/progress.js';
import { ControlServer } from '../control/control-server.js';
import { launchInnerMachine } from '../scenario/run/guest-lab-host.js';
import { Hotplugger } from '../hotplug/hotplug.js';
import { HostDdwView } from '../ddw/host-view.js';
import { InputError } from '../util/errors.js';
import { describeWindow } from '../ddw/dma-window.js';
import { AgentHost } from '../host/agent-host.js';
import { ensureGuestImage } from '../image/ensure-guest-image.js';

export const CONTROL_SOCKET = 'control.sock';

function str(args: Record<string, unknown>, key: string, required = true): string | undefined {
  const v = args[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(v))
    throw new InputError('control request', key, 'must be a short name');
  return v;
}

function int(args: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = args[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new InputError('control request', key, `must be an integer from ${min} to ${max}`);
  return v;
}

/**
 * `tcelab up [profile]`: boots a lab and keeps it running, serving its control
 * socket until SIGINT/SIGTERM or a `shutdown` request; then powers it down.
 */
export async function upCommand(args: { profile: string; json: boolean }): Promise<number> {
  const progress = new StderrProgress();
  const profile = await loadProfile(args.profile);
  const image = await ensureGuestImage(profile, progress);
  const lab = await Lab.launch(profile, { image, progress });
  let control: ControlServer | undefined;
  // A nested lab host: the inner QEMU runs in the guest as long as the lab is up.
  let inner: Lab | undefined;
  let stopRequested: () => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stopRequested = () => resolve('shutdown requested');
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  try {
    const init = await lab.waitForGuestInit(progress);
    const agent = await lab.agent(progress);
    const hotplug = new Hotplugger(lab.qmp, agent);
    const ddw = new HostDdwView(lab.qmp, lab.process.trace.ddw, profile.phbs);
    if (profile.inner) {
      inner = await launchInnerMachine(profile.inner, new AgentHost(agent), lab.paths.dir, progress);
      if (profile.inner.guest.boot) {
        await inner.waitForGuestInit(progress);
        await inner.agent(progress);
      }
    }
    /** The lab a request names: the outer one, or (inner: true) the inner one. */
    const target = (a: Record<string, unknown>) => (a.inner === true ? innerLab() : lab);
    const innerLab = () => {
      if (!inner?.process.running)
        throw new InputError(
          'control request',
          'inner-qmp',
          inner ? 'the inner QEMU is no longer running' : `profile ${profile.name} has no inner lab`,
        );
      return inner;
    };
    control = new ControlServer(join(lab.paths.dir, CONTROL_SOCKET), {
      status: async () => ({
        profile: profile.name,
        guestKernel: init.kernelRelease,
        qemuPid: lab.process.pid,
        runtimeDir: lab.paths.dir,
        status: (await lab.qmp.queryStatus()).status,
        ...(inner
          ? {
              inner: {
                qemuPid: inner.process.pid,
                qemuVersion: inner.qmp.qemuVersion,
                running: inner.process.running,
                ...(inner.process.running ? { status: (await inner.qmp.queryStatus()).status } : {}),
              },
            }
          : {}),
      }),
      // One QMP command to the lab's QEMU: this controller holds QEMU's only QMP connection, so others come through here.
      qmp: async (a) => relayQmp(lab, a),
      // One QMP command to the inner QEMU, relayed by the guest agent.
      'inner-qmp': async (a) => relayQmp(innerLab(), a),
      'hotplug-phb': async (a) => await hotplug.hotplugPhb(int(a, 'index', 1, 30), { id: str(a, 'id', false), ddw: a.ddw !== false }),
      'hotplug-device': async (a) =>
        await hotplug.hotplugDevice(str(a, 'phb')!, { id: str(a, 'id')!, driver: str(a, 'driver')!, host: str(a, 'host', false) }),
      'unplug-device': async (a) => ({ timings: await hotplug.unplugDevice(str(a, 'id')!) }),
      'unplug-phb': async (a) => ({ timings: await hotplug.unplugPhb(str(a, 'id')!) }),
      list: async () => ({
        phbs: [...hotplug.phbs.values()],
        devices: [...hotplug.devices.values()],
        iommuGroups: (await agent.info()).iommuGroups,
      }),
      windows: async () => (await ddw.windows([...hotplug.phbs.values()])).map((w) => ({ ...w, description: describeWindow(w) })),
      // A program in the guest (or the inner guest), through its agent: its exit code and output.
      exec: async (a) => {
        const argv = a.argv;
        if (!Array.isArray(argv) || argv.length === 0 || argv.length > 64 || !argv.every((x) => typeof x === 'string'))
          throw new InputError('control request', 'argv', 'must be 1 to 64 strings');
        const t = target(a);
        if (!t.profile.guest.boot)
          throw new InputError('control request', 'inner', 'the inner machine boots no guest: there is nothing to run a program in');
        const timeoutSec = a.timeoutSec === undefined ? 60 : int(a, 'timeoutSec', 1, 3600);
        return await (await t.agent()).exec(argv as string[], timeoutSec * 1000);
      },
      // The console since an offset (a long poll of up to waitMs for more): what `tcelab console` shows.
      'console-read': async (a) => {
        const t = target(a);
        const c = t.process.console;
        const since = a.since === undefined ? Math.max(0, c.mark() - 8192) : int(a, 'since', 0, Number.MAX_SAFE_INTEGER);
        const waitMs = a.waitMs === undefined ? 0 : int(a, 'waitMs', 0, 10_000);
        if (c.mark() <= since && waitMs > 0 && t.process.running)
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              c.off('data', done);
              resolve();
            };
            const timer = setTimeout(done, waitMs);
            c.on('data', done);
          });
        return { text: c.textSince(since), next: c.mark(), running: t.process.running };
      },
      // Keys typed on the lab's console (its shell reads hvc0); the inner machine's console takes none.
      'console-write': async (a) => {
        const text = a.text;
        if (typeof text !== 'string' || text.length > 4096)
          throw new InputError('control request', 'text', 'must be a string of at most 4096 characters');
        target(a).process.typeOnConsole(text);
        return {};
      },
      shutdown: async () => {
        setImmediate(stopRequested);
        return { stopping: true };
      },
    });
    await control.listen();
    const socket = join(lab.paths.dir, CONTROL_SOCKET);
    if (args.json)
      process.stdout.write(
        `${JSON.stringify({ up: true, runtimeDir: lab.paths.dir, controlSocket: socket, guestKernel: init.kernelRelease })}\n`,
      );
    else {
      process.stdout.write(
        `lab ${profile.name} is up: guest ${init.kernelRelease}, QEMU ${lab.qmp.qemuVersion} (pid ${lab.process.pid})\n` +
          `  runtime dir:    ${lab.paths.dir}\n  control socket: ${socket}\n` +
          (inner
            ? `  inner QEMU ${inner.qmp.qemuVersion} in the guest (pid ${inner.process.pid}), ${profile
                .inner!.devices.filter((d) => d.host)
                .map((d) => `${d.host} passed through`)
                .join(', ')}\n  try: tcelab qmp inner query-status\n`
            : '  try: tcelab hotplug phb add 2 && tcelab hotplug device add hphb2 dev0\n') +
          '  Ctrl-C (or tcelab hotplug shutdown) powers it down\n',
      );
    }
    const why = await Promise.race([stopped, lab.process.exited.then((e) => `QEMU exited (${e.signal ?? e.code})`)]);
    progress.info(`tcelab up: ${why}`);
    await control.close();
    control = undefined;
    // What was hot-plugged goes down with the machine: no guest-side unplug first. Removing a PHB in the guest takes
    // drmgr 13–24 s under TCG (docs/benchmark.md), a wait for nothing when the machine powers off next;
    // `tcelab hotplug phb remove` is there for a removal that is the point.
    // The inner lab first, while the guest that gives its device back is still up.
    await inner?.close({ progress });
    if (lab.process.running) await lab.shutdown('powerdown', progress);
    return 0;
  } catch (err) {
    lab.failed = true;
    throw err;
  } finally {
    await control?.close();
    await inner?.dispose().catch(() => {});
    const kept = await lab.dispose();
    if (kept) process.stderr.write(`artifacts kept in ${kept}\n`);
  }
}

/** A relayed QMP request ({command, arguments}) checked, then run on the lab's own QMP connection. */
async function relayQmp(lab: Lab, a: Record<string, unknown>): Promise<{ return: unknown }> {
  const command = a.command;
  if (typeof command !== 'string' || !/^[a-z][a-z0-9_-]{0,63}$/.test(command))
    throw new InputError('control request', 'command', 'must be a QMP command name');
  const qmpArgs = a.arguments;
  if (qmpArgs !== undefined && (typeof qmpArgs !== 'object' || qmpArgs === null || Array.isArray(qmpArgs)))
    throw new InputError('control request', 'arguments', 'must be a JSON object');
  return { return: await lab.qmp.execute(command, qmpArgs as Record<string, unknown> | undefined) };
}
