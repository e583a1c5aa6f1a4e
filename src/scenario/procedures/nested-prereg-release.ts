import { describeHolder } from '../guest-balance.js';
import type { ScenarioContext, ScenarioDefinition } from '../scenario.js';
import { awaitGuestRelease, guestSampleNow } from '../guest-release.js';
import type { Lab } from '../../lab/lab.js';
import type { ShutdownMethod } from '../../lab/shutdown.js';
import { innerProfile, launchInnerLab, disposeInnerLab, adoptInnerVfioFds } from '../nested.js';
import type { Profile } from '../../qemu/profile.js';
import { runDoctor } from '../../doctor/doctor.js';
import { TcelabError } from '../../util/errors.js';

const METHODS = ['quit', 'term', 'kill'] as const;
type InnerShutdown = (typeof METHODS)[number];

/**
 * The seed "put pages on VFIO container shutdown" with the real userspace
 * tool: the lab's guest is a POWER host running QEMU, and that QEMU passes the
 * guest's edu through with vfio-pci. Creating the inner machine pre-registers
 * all its RAM (VFIO sPAPR TCE v2) in the guest kernel; each way the inner QEMU
 * can go away (QMP quit, SIGTERM, SIGKILL) must release every pinned page.
 * Seeded fault: another process holds the inner QEMU's VFIO fds (duplicated
 * with pidfd_getfd, as if passed to it): the pins must be reported as NOT
 * released, and released once that process is gone.
 */
export const nestedPreregRelease: ScenarioDefinition = {
  name: 'nested-prereg-release',
  description:
    'the guest runs QEMU with its device passed through: pins = inner RAM exactly, released after quit/SIGTERM/SIGKILL; a seeded fd holder is reported',
  defaultProfile: 'nested-lab-host',
  drivesInnerLabs: true,
  optionSpecs: {
    via: { type: 'string', pattern: /^(quit|term|kill)(,(quit|term|kill))*$/, patternHint: 'quit, term or kill, separated by commas' },
    fault: { type: 'boolean' },
    faultVia: { type: 'string', enum: ['quit', 'term', 'kill'] },
    releaseTimeoutMs: { type: 'integer', min: 100, max: 600_000 },
    leakWaitMs: { type: 'integer', min: 100, max: 600_000 },
  },
  // Each applies to one cycle, so one run shows the same checks passing in the other cycles.
  seedableFaults: {
    'doctor-wrong-qemu': 'the doctor on the guest is asked about a QEMU binary that is not there',
    'inner-without-device': "the kill cycle's inner QEMU is started without its vfio-pci device, so nothing is pre-registered",
    'inner-not-paused': "the term cycle's inner QEMU is started without -S: its machine runs (VOF, no kernel)",
    'term-via-quit': 'the term cycle asks its inner QEMU to go with QMP quit instead of SIGTERM',
    'agent-fd-leak': "a program is spawned in the guest after the agent's fds are counted and left running until the count",
  },
  async run(ctx) {
    const { agent, checks } = ctx;
    const inner = innerProfile(ctx);
    const methods = String(ctx.options.via ?? METHODS.join(','))
      .split(',')
      .map((m) => m.trim());
    for (const m of methods) {
      if (!(METHODS as readonly string[]).includes(m))
        throw new TcelabError('option via', `"${m}" is not one of ${METHODS.join(', ')}`, 'e.g. --set via=quit,term');
    }
    const host = ctx.guestProbe.host;
    const pageSize = (await agent.info()).pageSize;
    const pages = (inner.qemu.memoryMiB * 1024 * 1024) / pageSize;

    // The same doctor that checks a real lab host, run on the guest through its agent.
    const doctorOf = ctx.seeded('doctor-wrong-qemu') ? { ...inner, qemu: { ...inner.qemu, binary: 'qemu-system-ppc64-absent' } } : inner;
    const doctor = await runDoctor(host, doctorOf, { pid: 'self' });
    for (const f of doctor.findings.filter((x) => x.check.startsWith('IOMMU group') || x.check === 'QEMU binary' || x.status === 'fail')) {
      checks.record(`doctor on the guest: ${f.check}`, f.status !== 'fail', 'ok', f.status, f.detail);
    }

    // The agent's open fds before and after: every spawned program's pipes and every relay must be closed.
    const agentPid = (await agent.ping()).pid;
    const agentFds = async () => ((await host.listDir(`/proc/${agentPid}/fd`)) ?? []).length;
    const fdsBefore = await agentFds();
    const leaked = ctx.seeded('agent-fd-leak') ? await agent.spawn(['sleep', '600']) : undefined;
    for (const m of methods as InnerShutdown[]) await innerCycle(ctx, inner, m, pages);
    const faultVia = String(ctx.options.faultVia ?? 'quit');
    if (!(METHODS as readonly string[]).includes(faultVia))
      throw new TcelabError('option faultVia', `"${faultVia}" is not one of ${METHODS.join(', ')}`, 'e.g. --set faultVia=kill');
    if (ctx.options.fault !== false) {
      // Released two ways: the holder exits; or the device leaves vfio-pci, which takes its group out of the container.
      await innerCycle(ctx, inner, faultVia as InnerShutdown, pages, 'holder-exit');
      await innerCycle(ctx, inner, faultVia as InnerShutdown, pages, 'unbind');
    }
    checks.equal(
      'agent: no pipe or relay left open after the inner labs',
      await agentFds(),
      fdsBefore,
      `fds of the agent (pid ${agentPid})`,
    );
    if (leaked) {
      // The stream can be closed once the agent has seen its program end.
      await agent.kill(leaked.pid, 'KILL');
      for (let i = 0; i < 10 && !(await agent.streamRead(leaked.stream, 1000)).done; i++);
      await agent.streamClose(leaked.stream);
    }
  },
};

/**
 * One inner QEMU: launched, checked, shut down by `method`, pins judged. With
 * `seededFault`, a worker adopts its VFIO fds first; the pins must then stay,
 * and go when the holder exits or when the device is unbound from vfio-pci.
 */
async function innerCycle(
  ctx: ScenarioContext,
  inner: Profile,
  method: InnerShutdown,
  pages: number,
  seededFault?: 'holder-exit' | 'unbind',
): Promise<void> {
  const { agent, checks } = ctx;
  const label = seededFault === 'holder-exit' ? 'seeded fault' : seededFault === 'unbind' ? 'seeded fault, unbind' : method;
  const releaseTimeoutMs = Number(ctx.options.releaseTimeoutMs ?? 10_000);
  const leakWaitMs = Number(ctx.options.leakWaitMs ?? 3000);
  const base = await guestSampleNow(ctx);
  ctx.phase(`${label}: launch inner QEMU`);
  const t0 = Date.now();
  // Seeded faults change one cycle's inner QEMU or request; the checks keep expecting what the profile says.
  const seededHere = (fault: string, cycle: InnerShutdown) => !seededFault && method === cycle && ctx.seeded(fault);
  const launched: Profile = {
    ...inner,
    qemu: { ...inner.qemu, startPaused: seededHere('inner-not-paused', 'term') ? false : inner.qemu.startPaused },
    devices: seededHere('inner-without-device', 'kill') ? inner.devices.filter((d) => d.driver !== 'vfio-pci') : inner.devices,
  };
  const lab = await launchInnerLab(ctx, launched);
  let holder: Awaited<ReturnType<typeof agent.startWorker>> | undefined;
  try {
    ctx.timings.push({ step: `${label}: inner QEMU start to QMP`, ms: Date.now() - t0 });
    if (method === 'quit' && !seededFault)
      ctx.progress.info(
        `inner lab: QEMU ${lab.qmp.qemuVersion} in the guest, pid ${lab.process.pid}, ${inner.qemu.memoryMiB} MiB, ${lab.profile.devices
          .filter((d) => d.host)
          .map((d) => `${d.id} = ${d.host}`)
          .join(', ')}`,
      );
    ctx.watchGuestPid(lab.process.pid);
    // Pre-registration happens while the machine is created: by the time QMP answers it is done.
    const held =
      (await ctx.sampler.waitFor('guest', (c) => c.vmLckKb !== undefined && c.pinnedPages - base.counters.pinnedPages >= pages, {
        after: ctx.sampler.now(),
        timeoutMs: 10_000,
      })) ??
      ctx.sampler
        .of('guest')
        .filter((s) => s.pid === lab.process.pid)
        .at(-1);
    if (!held) throw new TcelabError(`${label}: sample the inner QEMU`, `no guest sample of pid ${lab.process.pid} within 10 s`);
    ctx.phase(`${label}: inner RAM registered`);
    checks.equal(
      `${label}: guest kernel pins = inner RAM pages (${inner.qemu.memoryMiB} MiB)`,
      held.counters.pinnedPages - base.counters.pinnedPages,
      pages,
    );
    checks.atLeast(
      `${label}: inner QEMU VmLck covers its RAM`,
      held.counters.vmLckKb ?? 0,
      inner.qemu.memoryMiB * 1024,
      'kB (RAM + TCE table)',
    );
    const status = await lab.qmp.queryStatus();
    // A KVM lab host's inner machine boots (kvm-lab-host): created and running, not paused.
    if (inner.qemu.startPaused) checks.equal(`${label}: inner machine created and paused (-S)`, status.status, 'prelaunch');
    else checks.equal(`${label}: inner machine created and running`, status.status, 'running');
    if (method === 'quit' && !seededFault) await checkPassthrough(ctx, lab);

    if (seededFault) {
      holder = await agent.startWorker();
      const heldFds = await adoptInnerVfioFds(holder, lab);
      ctx.phase(`${label}: worker ${holder.pid} holds ${heldFds.join(', ')}`);
    }

    const requestT = ctx.phase(`${label}: inner QEMU shutdown requested (${method})`);
    const sd = await lab.shutdown(seededHere('term-via-quit', 'term') ? 'quit' : (method as ShutdownMethod));
    ctx.phase(`${label}: inner QEMU exited`);
    ctx.timings.push({ step: `${label}: ${method} to inner QEMU exit`, ms: sd.durationMs });
    checks.equal(`${label}: inner QEMU went away via ${method} without escalation`, sd.escalations, []);
    // QMP events come through the relay too: QEMU says why it stopped before it goes.
    const reason = { quit: 'host-qmp-quit', term: 'host-signal', kill: undefined }[method];
    if (reason)
      checks.equal(
        `${label}: the inner QEMU's SHUTDOWN event says ${reason}`,
        (sd.shutdownEvent as { reason?: string } | undefined)?.reason ?? 'no event',
        reason,
      );
    ctx.watchGuestPid(undefined);

    if (!seededFault) {
      const v = await awaitGuestRelease(ctx, base, `inner QEMU ${method}`, requestT, releaseTimeoutMs, true);
      checks.record(
        `${label}: every pinned page released`,
        v.returned,
        v.baseline,
        v.final,
        v.returned
          ? `release latency ${v.latencyMs} ms from the ${method} request (QEMU exited after ${sd.durationMs} ms), peak ${v.peak}`
          : `not within ${releaseTimeoutMs} ms, peak ${v.peak}`,
      );
      return;
    }
    const v = await awaitGuestRelease(ctx, base, `inner QEMU ${method} (fds held)`, requestT, leakWaitMs, true);
    checks.record(
      `${label}: pins NOT released while another process holds the inner QEMU's container`,
      !v.returned,
      v.atRestMs !== undefined ? 'not released (at rest after RCU barriers)' : `not released within ${leakWaitMs} ms`,
      v.returned
        ? `released after ${v.latencyMs} ms`
        : `${v.final - v.baseline} pages still pinned${v.atRestMs !== undefined ? ` (at rest after RCU barriers, ${v.atRestMs} ms)` : ''}`,
    );
    const named = (await agent.pinHolders()).find((h) => h.pid === holder!.pid);
    checks.record(
      `${label}: the holder is named`,
      named !== undefined,
      `pid ${holder!.pid}`,
      named ? describeHolder(named) : 'not among the VFIO holders',
    );
    if (seededFault === 'unbind') {
      // The last device of the group leaves vfio-pci: the group is removed and
      // detached from the container, whose shutdown puts the pages — holder or not.
      const device = lab.profile.devices.find((d) => d.host)!.host!;
      await agent.unbind(device);
      const t = ctx.phase(`${label}: ${device} unbound from vfio-pci (holder alive)`);
      const vu = await awaitGuestRelease(ctx, base, 'device unbound (holder alive)', t, releaseTimeoutMs, true);
      checks.record(
        `${label}: pins released when the device leaves vfio-pci, though the holder lives`,
        vu.returned,
        vu.baseline,
        vu.final,
        vu.returned ? `release latency ${vu.latencyMs} ms from the unbind` : `not within ${releaseTimeoutMs} ms`,
      );
      const still = (await agent.pinHolders()).find((h) => h.pid === holder!.pid);
      checks.record(
        `${label}: the holder's group fd now points at a deleted group`,
        still?.fds.some((f) => f.target.endsWith('(deleted)')) === true,
        'a "(deleted)" group',
        still ? describeHolder(still) : 'no longer a holder',
      );
      return;
    }
    await holder!.stop('KILL');
    holder = undefined;
    const t2 = ctx.phase(`${label}: holder killed`);
    const v2 = await awaitGuestRelease(ctx, base, 'holder exit', t2, releaseTimeoutMs, true);
    checks.record(
      `${label}: pins released once the holder exits`,
      v2.returned,
      v2.baseline,
      v2.final,
      v2.returned ? `release latency ${v2.latencyMs} ms from the holder's exit` : `not within ${releaseTimeoutMs} ms`,
    );
  } finally {
    ctx.watchGuestPid(undefined);
    await holder?.stop('KILL').catch(() => {});
    await disposeInnerLab(ctx, lab, label);
  }
}

/** The inner QEMU shows the guest's device (edu: 1234:11e8) on its PHB: the passthrough is real. */
async function checkPassthrough(ctx: ScenarioContext, lab: Lab): Promise<void> {
  const buses = await lab.qmp.queryPci();
  const dev = lab.profile.devices.find((d) => d.driver === 'vfio-pci')!;
  const seen = buses.flatMap((b) => b.devices).find((d) => d.qdev_id === dev.id);
  const id = (n: number) => n.toString(16).padStart(4, '0');
  const info = (await ctx.agent.info()).iommuGroups.flatMap((g) => g.devices).find((d) => d.address === dev.host);
  const expected = info ? `${id(Number(info.vendor))}:${id(Number(info.device))}` : 'the guest device';
  ctx.checks.equal(
    `inner QEMU passes ${dev.host} through as ${dev.id}`,
    seen ? `${id(seen.id.vendor)}:${id(seen.id.device)}` : 'absent',
    expected,
  );
}
