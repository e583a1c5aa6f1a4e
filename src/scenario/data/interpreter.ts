import type { ScenarioContext, ScenarioDefinition } from '../scenario.js';
import type { ScenarioFile, ScenarioStep } from './scenario-file.js';
import type { VfioWorker } from '../../agent/agent-client.js';
import type { Sample } from '../../probes/sampler.js';
import { Hotplugger } from '../../hotplug/hotplug.js';
import { findGuestDevice } from '../guest-vfio.js';
import { guestRelease, guestSampleNow } from '../guest-release.js';
import { describeHolders } from '../guest-balance.js';
import { validateScenarioOptions } from '../seeded-faults.js';
import { TcelabError } from '../../util/errors.js';
import type { Profile } from '../../qemu/profile.js';
import type { Lab } from '../../qemu/lab.js';
import { launchInnerLab, disposeInnerLab, adoptInnerVfioFds } from '../nested.js';

const MiB = 1024 * 1024;

interface State {
  bindings: Map<string, { address: string; group: number }>;
  workers: Map<string, VfioWorker>;
  regions: Map<string, { worker: string; region: number; size: number }>;
  windows: Map<string, { start: bigint; size: bigint }>;
  marks: Map<string, Sample>;
  hotplug?: Hotplugger;
  /** Inner labs of a nested lab host, by name; disposed at the end whatever happened. */
  inners: Map<string, Lab>;
  /** The last action that may release pins: what expect-release measures from. */
  lastEvent?: { name: string; t: number };
}

function get<T>(m: Map<string, T>, key: unknown, what: string, step: number): T {
  const v = m.get(String(key));
  if (v === undefined) throw new TcelabError(`step ${step}`, `no ${what} named "${key}" (define it with "as" in an earlier step)`);
  return v;
}

/** A ScenarioDefinition whose steps come from a scenario file; `do` steps call named procedures. */
export function definitionFromFile(file: ScenarioFile, procedures: ScenarioDefinition[]): ScenarioDefinition {
  const used = file.steps
    .filter((s) => s.step === 'do')
    .map((s) => {
      const p = procedures.find((x) => x.name === s.procedure);
      if (!p)
        throw new TcelabError(
          `scenario ${file.name}`,
          `step "do" names the unknown procedure "${s.procedure}"`,
          `known: ${procedures.map((x) => x.name).join(', ')}`,
        );
      return p;
    });
  // A file takes the options of the procedures it calls; each `do` step's own options are checked against its procedure now.
  for (const [i, s] of file.steps.entries()) {
    if (s.step !== 'do') continue;
    const proc = procedures.find((x) => x.name === s.procedure)!;
    validateScenarioOptions({ ...proc, name: file.name }, (s.options as Record<string, unknown>) ?? {}, `steps[${i}].options`);
  }
  return {
    name: file.name,
    description: file.description,
    defaultProfile: file.profile,
    optionSpecs: Object.assign({}, ...used.map((p) => p.optionSpecs ?? {})),
    seedableFaults: used.some((p) => p.seedableFaults) ? Object.assign({}, ...used.map((p) => p.seedableFaults ?? {})) : undefined,
    keepsGuestPins: used.find((p) => p.keepsGuestPins)?.keepsGuestPins,
    adjustProfile: (profile: Profile, options) =>
      used.reduce((p, proc) => (proc.adjustProfile ? proc.adjustProfile(p, options) : p), profile),
    async run(ctx) {
      const st: State = {
        bindings: new Map(),
        workers: new Map(),
        regions: new Map(),
        windows: new Map(),
        marks: new Map(),
        inners: new Map(),
      };
      try {
        for (const [i, step] of file.steps.entries()) {
          const n = i + 1;
          const timeoutMs = (step.timeoutSec ?? 300) * 1000;
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new TcelabError(
                    `step ${n} (${step.step})`,
                    `did not finish within ${timeoutMs / 1000} s`,
                    'raise its "timeoutSec" if the lab is slow',
                  ),
                ),
              timeoutMs,
            );
          });
          try {
            await Promise.race([runStep(ctx, st, step, n, procedures), timeout]);
          } finally {
            clearTimeout(timer);
          }
        }
      } finally {
        for (const [label, lab] of st.inners) await disposeInnerLab(ctx, lab, label).catch(() => {});
        ctx.watchGuestPid(undefined);
        await st.hotplug?.unplugAll();
      }
    },
  };
}

async function runStep(ctx: ScenarioContext, st: State, s: ScenarioStep, n: number, procedures: ScenarioDefinition[]): Promise<void> {
  const { agent, checks } = ctx;
  const tag = `step ${n}: ${s.step}`;
  const worker = () => get(st.workers, s.worker, 'worker', n);
  const event = (name: string) => {
    st.lastEvent = { name, t: ctx.phase(name) };
  };
  const expectable = async (label: string, op: Promise<unknown>) => {
    if (s.expectError) await checks.failsWith(`${tag} ${label}`, op, String(s.expectError));
    else if ((await checks.succeeds(`${tag} ${label}`, op)) === undefined) throw new TcelabError(tag, `${label} failed`);
  };
  switch (s.step) {
    case 'bind': {
      const dev = await findGuestDevice(agent, ctx.profile, String(s.device));
      const b = await agent.bind(dev.address);
      st.bindings.set(String(s.as), { address: dev.address, group: b.group });
      return;
    }
    case 'unbind':
      await agent.unbind(get(st.bindings, s.binding, 'binding', n).address);
      return;
    case 'start-worker': {
      const w = await agent.startWorker();
      st.workers.set(String(s.as), w);
      ctx.watchGuestPid(w.pid);
      return;
    }
    case 'stop-worker':
      await worker().stop((s.signal as 'TERM' | 'KILL') ?? 'TERM');
      event(`${tag} (${s.worker})`);
      return;
    case 'open':
      await worker().open(get(st.bindings, s.binding, 'binding', n).group);
      return;
    case 'alloc': {
      const r = await worker().alloc(Number(s.sizeMiB) * MiB, s.hugetlb === true);
      st.regions.set(String(s.as), { worker: String(s.worker), region: r.region, size: r.size });
      return;
    }
    case 'register':
    case 'unregister': {
      const r = get(st.regions, s.region, 'region', n);
      const w = worker();
      await expectable(`${s.region}`, s.step === 'register' ? w.register(r.region) : w.unregister(r.region));
      event(`${tag} ${s.region}`);
      return;
    }
    case 'create-window': {
      const size = BigInt(Number(s.sizeMiB)) * BigInt(MiB);
      const op = worker().createWindow(Number(s.pageShift), size, Number(s.levels ?? 1));
      if (s.expectError) {
        await checks.failsWith(`${tag} ${s.as}`, op, String(s.expectError));
        return;
      }
      const w = await op;
      st.windows.set(String(s.as), { start: BigInt(w.startAddr), size });
      ctx.phase(`${tag} ${s.as}`);
      return;
    }
    case 'remove-window':
      await worker().removeWindow(`0x${get(st.windows, s.window, 'window', n).start.toString(16)}`);
      st.windows.delete(String(s.window));
      return;
    case 'map': {
      const r = get(st.regions, s.region, 'region', n);
      const w = get(st.windows, s.window, 'window', n);
      await expectable(
        `${s.region} into ${s.window}`,
        worker().map(r.region, w.start, { size: s.sizeMiB ? Number(s.sizeMiB) * MiB : r.size }),
      );
      return;
    }
    case 'unmap':
      await worker().unmap(get(st.windows, s.window, 'window', n).start, Number(s.sizeMiB) * MiB);
      return;
    case 'close-container':
      await worker().closeContainer();
      event(`${tag} (${s.worker})`);
      return;
    case 'close-group':
      await worker().closeGroup();
      event(`${tag} (${s.worker})`);
      return;
    case 'mark':
      st.marks.set(String(s.as), await guestSampleNow(ctx));
      return;
    case 'expect-guest-pins': {
      const base = get(st.marks, s.since, 'mark', n);
      const now = await guestSampleNow(ctx);
      const want = s.pages !== undefined ? Number(s.pages) : (Number(s.mib ?? 0) * MiB) / 4096;
      checks.equal(`${tag} since ${s.since}`, now.counters.pinnedPages - base.counters.pinnedPages, want, 'pages');
      return;
    }
    case 'expect-release': {
      const base = get(st.marks, s.since, 'mark', n);
      const from = st.lastEvent ?? { name: `${tag}`, t: ctx.phase(tag) };
      const v = await guestRelease(ctx, base, from.name, from.t, Number(s.withinSec) * 1000);
      checks.record(
        `${tag} back to ${s.since} within ${s.withinSec} s`,
        v.returned,
        v.baseline,
        v.final,
        v.returned ? `release latency ${v.latencyMs} ms` : `not released: ${describeHolders(await agent.pinHolders())}`,
      );
      return;
    }
    case 'expect-host-windows': {
      const phb = String(s.phb);
      const extra = [...(st.hotplug?.phbs.values() ?? [])];
      const ws = (await ctx.ddw.windows(extra)).filter((w) => w.phb === phb);
      checks.equal(`${tag} ${phb}`, ws.length, Number(s.count));
      return;
    }
    case 'hotplug-phb': {
      st.hotplug ??= new Hotplugger(ctx.lab.qmp, agent);
      const r = await st.hotplug.hotplugPhb(Number(s.index), { id: String(s.as), ddw: s.ddw !== false });
      ctx.timings.push(...r.timings.map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));
      return;
    }
    case 'hotplug-device': {
      st.hotplug ??= new Hotplugger(ctx.lab.qmp, agent);
      const r = await st.hotplug.hotplugDevice(String(s.phb), {
        id: String(s.as),
        driver: String(s.driver),
        host: s.host ? String(s.host) : undefined,
      });
      st.bindings.set(String(s.as), { address: r.device.address, group: r.device.group });
      ctx.timings.push(...r.timings.map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));
      // A hot-plugged device is bound under its own name.
      await agent.bind(r.device.address);
      return;
    }
    case 'unplug-device': {
      const b = st.bindings.get(String(s.device));
      if (b) await agent.unbind(b.address).catch(() => {});
      ctx.timings.push(...(await st.hotplug!.unplugDevice(String(s.device))).map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));
      return;
    }
    case 'unplug-phb':
      ctx.timings.push(...(await st.hotplug!.unplugPhb(String(s.phb))).map((t) => ({ step: `${tag}: ${t.step}`, ms: t.ms })));
      return;
    case 'guest-exec': {
      const argv = s.argv as string[];
      const r = await agent.exec(argv, (s.timeoutSec ?? 300) * 1000);
      if (s.expectExit !== undefined)
        checks.equal(`${tag} ${argv.join(' ')}`, r.exitCode, Number(s.expectExit), r.stderr.trim().slice(0, 200) || undefined);
      else if (r.exitCode !== 0)
        throw new TcelabError(tag, `${argv.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim().slice(0, 300)}`);
      return;
    }
    case 'sleep':
      await new Promise((r) => setTimeout(r, Number(s.ms)));
      return;
    case 'shutdown': {
      const sd = await ctx.shutdown(s.via as 'powerdown' | 'agent' | 'quit');
      checks.equal(`${tag} via ${s.via} without escalation`, sd.escalations, []);
      return;
    }
    case 'inner-launch': {
      const t0 = Date.now();
      const lab = await launchInnerLab(ctx);
      st.inners.set(String(s.as), lab);
      ctx.timings.push({ step: `${tag}: inner QEMU start to QMP`, ms: Date.now() - t0 });
      // Its VmLck goes into the guest samples; pre-registration is done by the time QMP answers.
      ctx.watchGuestPid(lab.process.pid);
      ctx.phase(`${tag} (${s.as}, pid ${lab.process.pid})`);
      return;
    }
    case 'inner-shutdown': {
      const lab = get(st.inners, s.inner, 'inner lab', n);
      event(`${tag} ${s.inner} via ${s.via}`);
      const sd = await lab.shutdown(s.via as 'quit' | 'term' | 'kill');
      checks.equal(`${tag} ${s.inner} via ${s.via} without escalation`, sd.escalations, []);
      ctx.watchGuestPid(undefined);
      // Disposed at the end of the scenario: disposing gives the device back to its
      // driver, and unbinding it from vfio-pci is itself a way pins go (see the README).
      return;
    }
    case 'adopt-fds': {
      // Seeded fault: the worker takes duplicates of the inner QEMU's VFIO fds (pidfd_getfd).
      const lab = get(st.inners, s.inner, 'inner lab', n);
      const held = await adoptInnerVfioFds(ctx, worker(), lab);
      ctx.phase(`${tag} ${s.worker} holds ${held.join(', ')}`);
      return;
    }
    case 'do': {
      const proc = procedures.find((p) => p.name === s.procedure)!;
      // The file's options are defaults; --set on the command line wins.
      await proc.run({ ...ctx, options: { ...((s.options as Record<string, string | number | boolean>) ?? {}), ...ctx.options } });
      return;
    }
    default:
      throw new TcelabError(tag, 'unknown step type');
  }
}
