import { readFile, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { accessSync, constants, existsSync } from 'node:fs';
import { Validator, parseJsonText, substituteVariables, type Spec } from '../util/validate.js';
import { InputError, TcelabError } from '../util/errors.js';
import { profilesDir } from '../util/paths.js';
import { DEFAULT_KERNEL, parseKernelSpec, withKconfigAdditions } from '../kernel/kernel-spec.js';
import { extraModules, IMAGE_VARIANT_PATTERN, type ImageVariant, runsQemu } from '../image/image-variant.js';

/**
 * A lab profile: everything needed to start one pseries machine, as data.
 * Profiles live in qemu-configs/*.json; `emulated` is the embedded default.
 */
export interface PhbSpec {
  id: string;
  index: number;
  ddw: boolean;
  /** Default 32-bit DMA window size of this PHB, MiB (QEMU's dma_win_size). */
  dmaWindowMiB?: number;
}

export interface DeviceSpec {
  id: string;
  /** QEMU device driver: edu, e1000e, vfio-pci… */
  driver: string;
  /** PHB id the device sits on. */
  phb: string;
  /** For vfio-pci: the host PCI address (domain:bus:slot.fn). */
  host?: string;
  props: Record<string, string>;
}

export interface Profile {
  name: string;
  description: string;
  qemu: {
    binary: string;
    accel: 'tcg' | 'kvm';
    cpu: string;
    memoryMiB: number;
    smp: number;
    firmware: 'vof' | 'slof';
    machine: Record<string, string>;
    memLock: boolean;
    /**
     * Guest RAM backed by the host's huge pages (hugetlbfs at /dev/hugepages): QEMU then gives a passed-through
     * device IOMMU pages as large as them. A lab host that is a guest reserves them itself.
     */
    hugepages: boolean;
    /** -S: the machine is created (and its RAM pre-registered with VFIO) but its CPUs never run. */
    startPaused: boolean;
    extraArgs: string[];
  };
  guest: {
    /** false: no kernel, no agent (a machine that only needs to exist, e.g. the inner lab of a nested host). */
    boot: boolean;
    /** "base" or "with-qemu": which image variant `tcelab guest build` makes. */
    image: ImageVariant;
    /** The kernel under test (kernel-spec.ts): debian:trixie unless the profile or --kernel says otherwise. */
    kernel: string;
    append: string;
    /**
     * Kernel modules the guest loads besides its own (kvm_hv on a KVM lab host): /init at boot (tcelab.modules=), or the
     * lab through the agent once it is up where a snapshot must not hold them loaded (modules-after-save.ts).
     */
    modules: string[];
    /**
     * Whether /init loads the RPA hotplug driver (rpadlpar_io), which PHB and device hotplug in the guest (drmgr)
     * need. Loading it registers a slot for each of the 256 DRCs of every PHB, measured at 0.45 s of the KVM lab
     * host's inner boot, so a guest that never hot-plugs can leave it out (false: tcelab.hotplug=off).
     */
    hotplug: boolean;
    bootTimeoutSec: number;
  };
  phbs: PhbSpec[];
  devices: DeviceSpec[];
  timeouts: {
    powerdownSec: number;
    quitSec: number;
  };
  /**
   * Nested lab host: a second pseries launched inside this lab's guest through
   * its agent, with a device of this guest passed through with vfio-pci.
   */
  inner?: Profile;
}

/** In a pseries guest, Linux numbers a PHB's PCI domain by its index: phb index 1 → "0001". */
/**
 * Whether the machine runs under KVM: then its host's kernel handles its hypercalls (TCE updates included) and is
 * under test too. The one place tcelab asks "is this a KVM lab".
 */
export function runsUnderKvm(profile: Pick<Profile, 'qemu'>): boolean {
  return profile.qemu.accel === 'kvm';
}

export function guestPciDomain(phb: Pick<PhbSpec, 'index'>): string {
  return phb.index.toString(16).padStart(4, '0');
}

const id: Spec = {
  type: 'string',
  pattern: /^[A-Za-z][A-Za-z0-9_-]{0,31}$/,
  patternHint: 'a QEMU id: a letter, then letters, digits, - or _ (at most 32)',
};
const bdf = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;
const qemuOptionValue: Spec = { type: 'string', pattern: /^[^,=\s]+$/, patternHint: 'no commas, equals signs or spaces' };

const machineFields: Record<string, Spec> = {
  description: { type: 'string', default: '' },
  qemu: {
    type: 'object',
    fields: {
      // A path, a name on PATH, or debian:<suite>: a QEMU staged from that suite's packages (stage-qemu.ts).
      binary: {
        type: 'string',
        default: 'qemu-system-ppc64',
        pattern: /^(?:debian:[a-z][a-z0-9-]{1,40}|(?!debian:).+)$/,
        patternHint: 'a path, a name on PATH, or debian:<suite> (e.g. debian:trixie)',
      },
      accel: { type: 'string', enum: ['tcg', 'kvm'] },
      cpu: { type: 'string', pattern: /^[A-Za-z0-9_.+-]+$/, patternHint: 'a QEMU CPU model such as power9 or host' },
      // pseries lays guest RAM out in 256 MiB blocks (LMBs): QEMU refuses any other size at start.
      memoryMiB: { type: 'integer', min: 256, max: 1024 * 1024, multipleOf: 256, multipleHint: "pseries' memory block size" },
      smp: { type: 'integer', min: 1, max: 256, default: 1 },
      firmware: { type: 'string', enum: ['vof', 'slof'], default: 'vof' },
      machine: { type: 'map', values: qemuOptionValue, optional: true },
      memLock: { type: 'boolean', default: false },
      hugepages: { type: 'boolean', default: false },
      startPaused: { type: 'boolean', default: false },
      extraArgs: { type: 'array', items: { type: 'string' }, maxItems: 64, default: [] },
    },
  },
  guest: {
    type: 'object',
    fields: {
      boot: { type: 'boolean', default: true },
      image: {
        type: 'string',
        default: 'base',
        pattern: IMAGE_VARIANT_PATTERN,
        patternHint: 'base, with-qemu, with-qemu:<suite> (a guest QEMU from another Debian suite, e.g. with-qemu:sid) or kvm-host',
      },
      kernel: {
        type: 'string',
        default: DEFAULT_KERNEL,
        pattern: /^(debian|deb|local):\S+$/,
        patternHint: 'debian:<suite>[/64k][@<glob>], deb:<files> or local:<vmlinux>[,<modules root>]',
      },
      // loglevel=5 after quiet: the console also shows KERN_WARNING (WARNING reports), which quiet hides.
      append: { type: 'string', default: 'console=hvc0 quiet loglevel=5' },
      modules: {
        type: 'array',
        maxItems: 8,
        default: [],
        items: { type: 'string', pattern: /^[a-z0-9_]{1,40}$/, patternHint: 'a kernel module name such as kvm_hv' },
      },
      hotplug: { type: 'boolean', default: true },
      bootTimeoutSec: { type: 'integer', min: 5, max: 3600, default: 120 },
    },
  },
  phbs: {
    type: 'array',
    maxItems: 31,
    default: [],
    items: {
      type: 'object',
      fields: {
        id,
        index: { type: 'integer', min: 1, max: 30 },
        ddw: { type: 'boolean', default: true },
        dmaWindowMiB: { type: 'integer', min: 1, max: 1024 * 1024, optional: true },
      },
    },
  },
  devices: {
    type: 'array',
    maxItems: 64,
    default: [],
    items: {
      type: 'object',
      fields: {
        id,
        driver: { type: 'string', pattern: /^[a-z0-9][a-z0-9_-]*$/, patternHint: 'a QEMU device driver name such as edu or vfio-pci' },
        phb: id,
        host: { type: 'string', pattern: bdf, patternHint: 'a PCI address domain:bus:slot.function, e.g. 0001:01:00.0', optional: true },
        props: { type: 'map', values: qemuOptionValue, optional: true },
      },
    },
  },
  timeouts: {
    type: 'object',
    optional: true,
    fields: {
      powerdownSec: { type: 'integer', min: 1, max: 600, default: 30 },
      quitSec: { type: 'integer', min: 1, max: 600, default: 10 },
    },
  },
};

export const profileSpec: Spec = {
  type: 'object',
  fields: {
    $schema: { type: 'string', optional: true },
    ...machineFields,
    inner: { type: 'object', optional: true, fields: machineFields },
  },
};

/** A machine as the schema leaves it: what crossCheck fills in is optional here. */
interface CheckedMachine {
  description: string;
  qemu: Omit<Profile['qemu'], 'machine'> & { machine?: Profile['qemu']['machine'] };
  guest: Profile['guest'];
  phbs: PhbSpec[];
  devices: Array<Omit<DeviceSpec, 'props'> & { props?: DeviceSpec['props'] }>;
  timeouts?: Profile['timeouts'];
  inner?: CheckedMachine;
}

/** Validates parsed JSON into a Profile; cross-field rules after the schema. */
export function validateProfile(raw: unknown, name: string, env: NodeJS.ProcessEnv = process.env): Profile {
  const source = `profile ${name}`;
  const v = new Validator(source);
  // Variables first, so that the schema checks the values QEMU will see.
  const p = v.check(substituteVariables(raw, env, source), profileSpec) as CheckedMachine;
  const profile = crossCheck(p, name, v, '');
  if (p.inner) {
    profile.inner = crossCheck(p.inner, `${name}.inner`, v, 'inner.');
    if (!profile.guest.boot) throw v.err('guest.boot', 'must be true: the inner lab runs inside this guest');
    if (!runsQemu(profile.guest.image)) {
      throw v.err('guest.image', 'must be "with-qemu" (or "with-qemu:<suite>", "kvm-host"): the inner lab needs QEMU in the guest');
    }
    // An inner machine that boots boots the base image the kvm-host image carries (INNER_BOOT_IMAGE).
    if (profile.inner.guest.boot && profile.guest.image !== 'kvm-host') {
      throw v.err(
        'guest.image',
        'must be "kvm-host" for an inner machine that boots (inner.guest.boot): it carries the inner guest\'s image',
      );
    }
    if (profile.inner.guest.boot && profile.inner.guest.image !== 'base') {
      throw v.err('inner.guest.image', 'must be "base": the inner guest boots the base image of the lab host\'s kernel');
    }
    if (runsUnderKvm(profile.inner) && !profile.guest.modules.includes('kvm_hv')) {
      throw v.err('guest.modules', 'must include "kvm_hv": the inner machine runs under KVM in this guest');
    }
    if (!profile.inner.devices.some((d) => d.driver === 'vfio-pci')) {
      throw v.err('inner.devices', 'needs a vfio-pci device: the point of a nested lab host is a device of this guest passed through');
    }
    profile.inner.devices.forEach((d, i) => {
      if (!d.host) return;
      const phb = profile.phbs.find((x) => d.host!.toLowerCase().startsWith(`${guestPciDomain(x)}:`));
      if (!phb || !profile.devices.some((x) => x.phb === phb.id)) {
        throw v.err(
          `inner.devices[${i}].host`,
          `${d.host} is not a device of this guest: the PCI domain is the index of the PHB it sits on ` +
            `(${profile.phbs.map((x) => `${x.id} → ${guestPciDomain(x)}`).join(', ') || 'no phbs'})`,
        );
      }
    });
  }
  return profile;
}

/** Builds one machine's Profile from validated fields and applies the rules that span fields; `at` prefixes field paths. */
function crossCheck(p: CheckedMachine, name: string, v: Validator, at: string): Profile {
  const profile: Profile = {
    name,
    description: p.description,
    qemu: { ...p.qemu, machine: p.qemu.machine ?? {} },
    guest: p.guest,
    phbs: p.phbs,
    devices: p.devices.map((d) => ({ ...d, props: d.props ?? {} })),
    timeouts: p.timeouts ?? { powerdownSec: 30, quitSec: 10 },
  };

  const ids = new Set<string>();
  const phbIndexes = new Set<number>();
  profile.phbs.forEach((phb, i) => {
    if (ids.has(phb.id)) throw v.err(`${at}phbs[${i}].id`, `"${phb.id}" is used twice`);
    if (phbIndexes.has(phb.index)) throw v.err(`${at}phbs[${i}].index`, `index ${phb.index} is used twice`);
    ids.add(phb.id);
    phbIndexes.add(phb.index);
  });
  profile.devices.forEach((d, i) => {
    if (ids.has(d.id)) throw v.err(`${at}devices[${i}].id`, `"${d.id}" is used twice`);
    ids.add(d.id);
    if (!profile.phbs.some((phb) => phb.id === d.phb)) {
      throw v.err(
        `${at}devices[${i}].phb`,
        `"${d.phb}" is not one of the profile's phbs (${profile.phbs.map((x) => x.id).join(', ') || 'none'})`,
      );
    }
    if (d.driver === 'vfio-pci' && !d.host) throw v.err(`${at}devices[${i}].host`, 'is required for a vfio-pci device');
    if (d.driver !== 'vfio-pci' && d.host) throw v.err(`${at}devices[${i}].host`, `only applies to vfio-pci, not ${d.driver}`);
  });
  // A bad kernel spec is refused with the profile, naming the field.
  try {
    parseKernelSpec(profile.guest.kernel, `${at}guest.kernel`);
  } catch (err) {
    throw v.err(`${at}guest.kernel`, `${profile.guest.kernel}: ${(err as InputError).why}`);
  }
  const carried = extraModules(profile.guest.image);
  profile.guest.modules.forEach((m, i) => {
    if (!carried.includes(m)) {
      throw v.err(
        `${at}guest.modules[${i}]`,
        `${m} is not in the "${profile.guest.image}" image ` +
          `(${carried.length ? `it carries ${carried.join(', ')}` : 'it carries no extra modules'}; kvm-host carries kvm_hv)`,
      );
    }
  });
  if (profile.qemu.accel === 'tcg' && profile.qemu.cpu === 'host') {
    throw v.err(`${at}qemu.cpu`, '"host" needs KVM; under TCG name a model such as power9');
  }
  for (const [k] of Object.entries(profile.qemu.machine)) {
    if (!/^[a-z][a-z0-9-]*$/.test(k)) throw v.err(`${at}qemu.machine.${k}`, 'is not a valid machine option name');
  }
  return profile;
}

/** The device address lab-host-vfio gets when TCELAB_VFIO_HOST is unset and a profile is only being listed or inspected. */
export const PLACEHOLDER_VFIO_HOST = '0000:00:00.0';

/** The environment for loading a profile to describe it rather than run it: an unset device variable is not an error. */
export function describingEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, TCELAB_VFIO_HOST: env.TCELAB_VFIO_HOST ?? PLACEHOLDER_VFIO_HOST };
}

/** Finds a profile by name (qemu-configs/<name>.json) or by path. */
export function resolveProfilePath(nameOrPath: string): string {
  if (nameOrPath.includes('/') || nameOrPath.endsWith('.json')) return nameOrPath;
  return join(profilesDir, `${nameOrPath}.json`);
}

export async function loadProfile(nameOrPath = 'emulated', env: NodeJS.ProcessEnv = process.env): Promise<Profile> {
  const path = resolveProfilePath(nameOrPath);
  if (!existsSync(path)) {
    const known = (await listProfiles()).join(', ');
    throw new TcelabError(`profile ${nameOrPath}`, `no such profile (${path} does not exist)`, `known profiles: ${known}`);
  }
  const name = basename(path).replace(/\.json$/, '');
  const text = await readFile(path, 'utf8');
  // --kernel and --qemu (the CLI passes them as TCELAB_KERNEL, TCELAB_QEMU) apply to every profile a command loads.
  return withInputs(validateProfile(parseJsonText(text, `profile ${name}`), name, env), {
    kernel: env.TCELAB_KERNEL,
    qemu: env.TCELAB_QEMU,
    kconfigAdd: kconfigAdditions(env),
  });
}

/** --kconfig-add's options and fragments (the CLI passes them as TCELAB_KCONFIG_ADD, a JSON list). */
export function kconfigAdditions(env: NodeJS.ProcessEnv = process.env): string[] {
  if (!env.TCELAB_KCONFIG_ADD) return [];
  const list = parseJsonText(env.TCELAB_KCONFIG_ADD, 'TCELAB_KCONFIG_ADD');
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))
    throw new InputError('TCELAB_KCONFIG_ADD', env.TCELAB_KCONFIG_ADD, 'must be a JSON list of strings (CONFIG_X=y or fragment files)');
  return list as string[];
}

/**
 * A profile with the inputs under test given on the command line: the guest kernel (--kernel, which carries any
 * --kconfig-add already), the kconfig additions for the profile's own kernel when no --kernel is given, and the
 * host QEMU binary (--qemu). All are checked here, before anything starts.
 */
export function withInputs(profile: Profile, inputs: { kernel?: string; qemu?: string; kconfigAdd?: string[] }): Profile {
  let out = profile;
  if (inputs.kernel !== undefined) {
    parseKernelSpec(inputs.kernel, '--kernel');
    out = { ...out, guest: { ...out.guest, kernel: inputs.kernel } };
  } else if (inputs.kconfigAdd?.length) {
    out = { ...out, guest: { ...out.guest, kernel: withKconfigAdditions(out.guest.kernel, inputs.kconfigAdd, 'guest.kernel') } };
  }
  if (inputs.qemu !== undefined) {
    checkQemuBinary(inputs.qemu);
    out = { ...out, qemu: { ...out.qemu, binary: inputs.qemu } };
  }
  return out;
}

/** A QEMU given as a path must exist and be executable (a bare name is looked up on PATH when it starts). */
export function checkQemuBinary(binary: string): void {
  if (!binary.includes('/')) return;
  if (!existsSync(binary)) throw new InputError('--qemu', binary, 'does not exist');
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new InputError('--qemu', binary, 'is not executable');
  }
}

export async function listProfiles(): Promise<string[]> {
  const entries = await readdir(profilesDir);
  return entries
    .filter((e) => e.endsWith('.json') && !e.startsWith('_'))
    .map((e) => e.replace(/\.json$/, ''))
    .sort();
}
