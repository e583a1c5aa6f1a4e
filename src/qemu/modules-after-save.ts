import type { Profile } from './profile.js';

/**
 * Guest modules /init must not load: their init registers state with the machine's hypervisor (QEMU) that QEMU does
 * not migrate, so a machine saved with them loaded comes back restored with that state gone while the guest kernel
 * believes it set. The lab loads them through its agent once it is up — after a cold lab saved its machine, after a
 * restored one resumed (lab/lab.ts) — so no snapshot holds them loaded. Module → the state, where QEMU keeps it and
 * what a restore without it does (measured with QEMU 10.0.13, docs/verdicts.md "QEMU findings").
 */
export const LOADED_AFTER_SAVE: Readonly<Record<string, string>> = {
  kvm_hv:
    'its init (kvmhv_nested_init) registers the nested partition table with H_SET_PARTITION_TABLE; QEMU keeps it in ' +
    'spapr->nested.ptcr (hw/ppc/spapr_nested.c: h_set_ptbl), which no vmstate section carries: restored, every ' +
    'H_ENTER_NESTED returns H_NOT_AVAILABLE (3) and the inner QEMU stops with "KVM: unknown exit, hardware reason 3"',
};

/** The profile's guest modules that /init loads at boot (tcelab.modules=). */
export function modulesAtBoot(profile: Pick<Profile, 'guest'>): string[] {
  return profile.guest.modules.filter((m) => !Object.hasOwn(LOADED_AFTER_SAVE, m));
}

/** The profile's guest modules that the lab loads through the agent once it is up (never in a snapshot). */
export function modulesAfterSave(profile: Pick<Profile, 'guest'>): string[] {
  return profile.guest.modules.filter((m) => Object.hasOwn(LOADED_AFTER_SAVE, m));
}
