import { type Profile, runsUnderKvm } from '../../qemu/profile.js';
import { InputError } from '../../util/errors.js';

/**
 * The precondition every KVM procedure shares: the profile is a KVM lab host — its inner machine runs under KVM (and
 * boots, where the scenario runs in it). Refused as bad input, before anything starts.
 */
export function requireKvmLabHost(scenario: string, profile: Profile, opts: { innerBoots: boolean }): Profile & { inner: Profile } {
  const inner = profile.inner;
  if (inner && runsUnderKvm(inner) && (!opts.innerBoots || inner.guest.boot)) return { ...profile, inner };
  const must = opts.innerBoots
    ? 'its inner machine must boot under KVM (inner.qemu.accel "kvm", inner.guest.boot true)'
    : 'its inner machine must run under KVM (inner.qemu.accel "kvm")';
  throw new InputError(
    `scenario ${scenario}`,
    `--profile ${profile.name}`,
    `is not a KVM lab host: ${must}`,
    'run it with --profile kvm-lab-host',
  );
}
