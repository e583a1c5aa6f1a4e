/**
 * What a guest kernel is and has, read from its own build (config, module tree) when its image is built, and
 * recorded in the image manifest: every report says what ran, and a scenario that needs something the kernel
 * lacks is refused before QEMU starts.
 */

/** The config options that matter to VFIO sPAPR passthrough, recorded for every kernel. */
export const RECORDED_CONFIG = [
  'VFIO_CONTAINER',
  'VFIO_IOMMU_SPAPR_TCE',
  'IOMMUFD',
  'VFIO_DEVICE_CDEV',
  'HOTPLUG_PCI_RPA',
  'HOTPLUG_PCI_RPA_DLPAR',
  'PPC_64K_PAGES',
  'SPAPR_TCE_IOMMU',
  'VFIO_PCI',
  'KVM_BOOK3S_64_HV',
] as const;

/** The modules the guest's /init loads (their dependencies follow from .modinfo). */
export const GUEST_MODULES = ['vfio', 'vfio_iommu_spapr_tce', 'vfio_pci', 'rpadlpar_io'] as const;

/** What a guest that is a KVM lab host loads besides (kvm-host images; /init loads it where the profile asks). */
export const KVM_HOST_MODULES = ['kvm_hv'] as const;

/** Every module whose state a kernel's facts record. */
export const RECORDED_MODULES = [...GUEST_MODULES, ...KVM_HOST_MODULES] as const;

export type ModuleState = 'module' | 'builtin' | 'missing';

export interface KernelFacts {
  /** uname -r */
  release: string;
  /** The kernel's base page size in bytes (4096, or 65536 with PPC_64K_PAGES). */
  pageSize: number;
  /** Each recorded option's value: y, m, a string, or "not set". */
  config: Record<string, string>;
  modules: Record<string, ModuleState>;
  /** Where it came from: the spec and, for Debian, the image package and version; for a kernel built from source, its build. */
  source: { spec: string; package?: string; version?: string; layout?: 'single' | 'split' | 'local' | 'source'; build?: KernelBuildFacts };
}

/** A kernel tcelab built from source: what from, where (its O= dir, where modules for it are built too), and the build's key. */
export interface KernelBuildFacts {
  /** The source tree, as said in reports: "linux-source-6.12 6.12.117-1", "/src/linux@v6.12 (1f2e3d4c5b6a)". */
  tree: string;
  /** The source directory make ran in, and the O= directory. */
  dir: string;
  out: string;
  /** The commit of a git tree (with "+<hash>" for local changes). */
  content: string;
  /** The build's cache key (the tree's content, the configuration, the compiler). */
  key: string;
  /** How long make took for this image (0: the build was there already). */
  buildMs: number;
}

/** CONFIG_X=value lines of a kernel .config; "# CONFIG_X is not set" reads as absent. */
export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^CONFIG_([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!.replace(/^"(.*)"$/, '$1'));
  }
  return out;
}

export function kernelFacts(args: {
  release: string;
  configText: string;
  /** Module names (normalised: - as _) found as .ko files in the image's module tree. */
  moduleFiles: Set<string>;
  /** modules.builtin, when the kernel ships one. */
  builtinText?: string;
  source: KernelFacts['source'];
}): KernelFacts {
  const config = parseKernelConfig(args.configText);
  const builtin = new Set(
    (args.builtinText ?? '')
      .split('\n')
      .filter(Boolean)
      .map((l) =>
        l
          .replace(/^.*\//, '')
          .replace(/\.ko.*$/, '')
          .replace(/-/g, '_'),
      ),
  );
  const modules: Record<string, ModuleState> = {};
  for (const m of RECORDED_MODULES) {
    modules[m] = args.moduleFiles.has(m) ? 'module' : builtin.has(m) ? 'builtin' : 'missing';
  }
  return {
    release: args.release,
    pageSize: config.get('PPC_64K_PAGES') === 'y' ? 65536 : 4096,
    config: Object.fromEntries(RECORDED_CONFIG.map((k) => [k, config.get(k) ?? 'not set'])),
    modules,
    source: args.source,
  };
}

/** What a scenario needs of the guest kernel; checked against the image's facts before a lab starts. */
export interface KernelRequirements {
  /** Options that must be y or m. */
  config?: string[];
  /** Modules that must be there (as modules or built in). */
  modules?: string[];
}

/** The unmet requirements, each said in words; empty when the kernel has everything. */
export function unmetRequirements(facts: KernelFacts, req: KernelRequirements | undefined): string[] {
  const out: string[] = [];
  for (const c of req?.config ?? []) {
    const v = facts.config[c];
    if (v === undefined) out.push(`CONFIG_${c} (not recorded for this kernel)`);
    else if (v !== 'y' && v !== 'm') out.push(`CONFIG_${c} (${v})`);
  }
  for (const m of req?.modules ?? []) if (facts.modules[m] === 'missing' || facts.modules[m] === undefined) out.push(`module ${m}`);
  return out;
}

/** What every scenario needs: the VFIO sPAPR TCE IOMMU driver and vfio-pci. */
export const VFIO_SPAPR_REQUIREMENTS: KernelRequirements = {
  config: ['VFIO_IOMMU_SPAPR_TCE', 'VFIO_PCI'],
  modules: ['vfio', 'vfio_iommu_spapr_tce', 'vfio_pci'],
};

/** What PHB and device hotplug in the guest (drmgr) needs on top. */
export const RPA_HOTPLUG_REQUIREMENTS: KernelRequirements = {
  config: ['HOTPLUG_PCI_RPA', 'HOTPLUG_PCI_RPA_DLPAR'],
  modules: ['rpadlpar_io'],
};

export function mergeRequirements(...all: Array<KernelRequirements | undefined>): KernelRequirements {
  return {
    config: [...new Set(all.flatMap((r) => r?.config ?? []))],
    modules: [...new Set(all.flatMap((r) => r?.modules ?? []))],
  };
}
