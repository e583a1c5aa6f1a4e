/**
 * What QEMU's stderr says when it dies before QMP is up. Its own error lines
 * ("qemu-system-ppc64: ...", "qemu: hardware error: ...") explain it; a
 * register dump after an abort does not. Known causes get a concrete fix.
 */
const HARMLESS = [/Cannot reset device .* no available reset mechanism/, /vfio\/eeh: EEH_PE_OP/];

const KNOWN: Array<{ pattern: RegExp; hint: string }> = [
  {
    pattern: /Failed to create SPAPR window: Invalid argument|vfio: DMA mapping failed/,
    hint:
      "the host kernel refused the PHB's 32-bit DMA window for the passed-through device: set dmaWindowMiB on that " +
      "PHB in the profile (64 MiB works in the nested lab; QEMU's default of 1 GiB does not)",
  },
  {
    pattern: /vfio .*: (?:group \d+ is not viable|no iommu_group found)/,
    hint: 'the device is not usable with VFIO: run `tcelab doctor` for its IOMMU group',
  },
  {
    // Linux's kvmhv_vcpu_entry_p9_nested() takes H_ENTER_NESTED's return code as the exit's trap: 3 is H_NOT_AVAILABLE,
    // QEMU's h_enter_nested() answer when it holds no partition table for the guest hypervisor (spapr->nested.ptcr 0).
    pattern: /KVM: unknown exit, hardware reason 3\b/,
    hint:
      "the host kernel's H_ENTER_NESTED was refused with H_NOT_AVAILABLE (3): its hypervisor holds no nested partition " +
      'table for it. A host guest restored from a machine saved with kvm_hv loaded is one (QEMU does not migrate ' +
      'spapr->nested.ptcr): load kvm_hv after the restore (docs/verdicts.md, QEMU findings)',
  },
  {
    pattern: /RLIMIT_MEMLOCK|Cannot allocate memory.*(?:locked|prereg)|ENOMEM.*register/i,
    hint: 'pre-registering guest RAM needs RLIMIT_MEMLOCK ≥ guest RAM (or CAP_IPC_LOCK): see `tcelab doctor`',
  },
];

/** The lines that explain a failed start, most telling last; at most `n`. */
export function explainingLines(stderr: string, n = 3): string {
  const lines = stderr
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const own = lines.filter((l) => /^qemu(?:-system-[\w-]+)?: /.test(l) && !HARMLESS.some((h) => h.test(l)));
  const chosen = (own.length ? own : lines).slice(-n);
  return chosen.join(' | ') || '(no stderr)';
}

export function knownCauseHint(stderr: string): string | undefined {
  return KNOWN.find((k) => k.pattern.test(stderr))?.hint;
}
