import { loadProfile } from '../qemu/profile.js';
import { LocalHost } from '../host/host.js';
import { runDoctor, formatDoctor } from '../doctor/doctor.js';
import { findGuestImage } from '../image/image-builder.js';

/** `tcelab doctor [--profile P]`: explains what the profile needs from this machine. Exit 0 when it can run. */
export async function doctorCommand(args: { profile?: string; json: boolean }): Promise<number> {
  const names = args.profile ? [args.profile] : ['emulated', 'lab-host-vfio'];
  let ok = true;
  const out = [];
  for (const name of names) {
    // The lab-host profile reads its device from the environment; say so rather than fail on it.
    const env = { ...process.env, TCELAB_VFIO_HOST: process.env.TCELAB_VFIO_HOST ?? '0000:00:00.0' };
    const profile = await loadProfile(name, env);
    const report = await runDoctor(new LocalHost(), profile, { skipDevices: !process.env.TCELAB_VFIO_HOST });
    const image = await findGuestImage(profile.guest.image);
    report.findings.push(image
      ? { check: 'guest image', status: 'ok', detail: `${profile.guest.image}: kernel ${image.manifest.kernelRelease}, built ${image.manifest.builtAt}` }
      : { check: 'guest image', status: 'fail', detail: `${profile.guest.image} is not built`, fix: 'run `tcelab guest build`' });
    if (!process.env.TCELAB_VFIO_HOST && profile.devices.some((d) => d.driver === 'vfio-pci')) {
      report.findings.push({ check: 'TCELAB_VFIO_HOST', status: 'fail', detail: 'not set: the profile does not know which device to pass through', fix: 'set TCELAB_VFIO_HOST=<domain:bus:slot.fn>' });
    }
    report.canRun = report.findings.every((x) => x.status !== 'fail');
    ok &&= report.canRun || !args.profile;
    out.push(report);
  }
  process.stdout.write(args.json ? `${JSON.stringify(out, null, 2)}\n` : out.map(formatDoctor).join('\n'));
  return ok ? 0 : 1;
}
