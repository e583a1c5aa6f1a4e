import { withStagedQemu } from '../qemu/stage-qemu.js';
import { describingEnv, listProfiles, loadProfile, PLACEHOLDER_VFIO_HOST, type Profile } from '../qemu/profile.js';
import { LocalHost } from '../host/local-host.js';
import { AgentHost } from '../host/agent-host.js';
import { runDoctor, formatDoctor, type DoctorReport } from '../doctor/doctor.js';
import { findGuestImage } from '../image/image-cache.js';
import { Lab } from '../lab/lab.js';
import { InputError } from '../util/errors.js';
import { StderrProgress } from '../util/progress.js';
import { ensureGuestImage } from '../image/ensure-guest-image.js';
import { installInterruptHandlers } from './interrupt.js';

/**
 * `tcelab doctor [--profile P] [--inner]`: explains what the profile needs from
 * this machine. Exit 0 when it can run. With --inner, a nested lab host's guest
 * is booted and the same checks run there, through the agent, for the inner lab.
 */
export async function doctorCommand(args: { profile?: string; json: boolean; inner?: boolean }): Promise<number> {
  const names = args.profile ? [args.profile] : await listProfiles();
  let ok = true;
  const out: DoctorReport[] = [];
  for (const name of names) {
    // The lab-host profile reads its device from the environment; say so rather than fail on it.
    const loaded = await loadProfile(name, describingEnv());
    // A debian:<suite> QEMU is checked as the labs run it: staged (once, with progress).
    const profile = await withStagedQemu(loaded, new StderrProgress());
    const report = await runDoctor(new LocalHost(), profile, {
      skipDevices: !process.env.TCELAB_VFIO_HOST,
      ...(profile !== loaded ? { qemuLabel: `${loaded.qemu.binary} (staged: ${profile.qemu.binary})` } : {}),
    });
    const image = await findGuestImage(profile.guest.image, profile.guest.kernel);
    report.findings.push(
      image
        ? {
            check: 'guest image',
            status: 'ok',
            detail: `${profile.guest.image}: kernel ${image.manifest.kernelRelease}, built ${image.manifest.builtAt}`,
          }
        : {
            check: 'guest image',
            status: 'warn',
            detail: `${profile.guest.image} is not built yet`,
            fix: `\`tcelab run\` builds it, or \`tcelab guest build${profile.guest.image === 'base' ? '' : ` --variant ${profile.guest.image}`}\``,
          },
    );
    if (!process.env.TCELAB_VFIO_HOST && profile.devices.some((d) => d.driver === 'vfio-pci' && d.host === PLACEHOLDER_VFIO_HOST)) {
      report.findings.push({
        check: 'TCELAB_VFIO_HOST',
        status: 'fail',
        detail: 'not set: the profile does not know which device to pass through',
        fix: 'set TCELAB_VFIO_HOST=<domain:bus:slot.fn>',
      });
    }
    if (profile.inner && !args.inner) {
      report.findings.push({
        check: 'inner lab',
        status: 'ok',
        detail: `runs inside the guest (${profile.inner.devices
          .filter((d) => d.host)
          .map((d) => `${d.host} passed through`)
          .join(', ')}); add --inner to boot the guest and check it there`,
      });
    }
    report.canRun = report.findings.every((x) => x.status !== 'fail');
    ok &&= report.canRun || !args.profile;
    out.push(report);
    if (args.inner && profile.inner) {
      const inner = await doctorInner(profile, profile.inner);
      ok &&= inner.canRun;
      out.push(inner);
    }
  }
  if (args.inner && !out.some((r) => r.host !== 'host'))
    throw new InputError(
      '--inner',
      'true',
      `only applies to a profile with an inner lab (${(await innerProfiles()).join(', ') || 'none shipped'})`,
    );
  process.stdout.write(args.json ? `${JSON.stringify(out, null, 2)}\n` : out.map(formatDoctor).join('\n'));
  return ok ? 0 : 1;
}

/** Boots the outer lab and runs the doctor on its guest, through the agent, for the inner lab. */
async function doctorInner(outer: Profile, inner: Profile): Promise<DoctorReport> {
  const progress = new StderrProgress();
  const lab = await Lab.launch(outer, { image: await ensureGuestImage(outer, progress), progress });
  const uninstall = installInterruptHandlers(async () => {
    lab.failed = true;
    await lab.dispose();
  });
  try {
    await lab.waitForGuestInit(progress);
    // 'self' is the agent: the inner QEMU inherits its limits and capabilities.
    const report = await progress.step('check the inner lab on the guest', async () =>
      runDoctor(new AgentHost(await lab.agent(progress), `the guest of ${outer.name}`), inner, { pid: 'self' }),
    );
    await lab.shutdown('powerdown', progress);
    return report;
  } catch (err) {
    lab.failed = true;
    throw err;
  } finally {
    uninstall();
    await lab.dispose();
  }
}

async function innerProfiles(): Promise<string[]> {
  const out: string[] = [];
  for (const n of await listProfiles()) if ((await loadProfile(n, describingEnv()).catch(() => undefined))?.inner) out.push(n);
  return out;
}
