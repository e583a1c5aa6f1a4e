import type { Host } from '../host/host.js';
import { type Profile, runsUnderKvm } from '../qemu/profile.js';
import { parseKbFields, parseMemlockLimit } from '../probes/proc.js';
import { VfioPciBinder } from '../host/vfio-binder.js';

/**
 * What a profile needs from the machine it runs on, checked on a Host and
 * explained: the QEMU binary and version, the accelerator, /dev/vfio, each
 * passed-through device and its IOMMU group's viability, RLIMIT_MEMLOCK
 * against guest RAM, huge pages.
 */
export interface Finding {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  host: string;
  profile: string;
  findings: Finding[];
  canRun: boolean;
}

export interface DoctorOptions {
  /** The pid whose RLIMIT_MEMLOCK QEMU will inherit (default: self). */
  pid?: number | 'self';
  /** Skip the QEMU binary check (a guest that has no QEMU). */
  skipQemu?: boolean;
  /** The profile's device address is not known (TCELAB_VFIO_HOST unset): do not inspect it. */
  skipDevices?: boolean;
  /** How to name the QEMU binary (a debian:<suite> spec and where it was staged), if not by its path. */
  qemuLabel?: string;
}

const CAP_IPC_LOCK = 14n;

export async function runDoctor(host: Host, profile: Profile, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const f: Finding[] = [];
  const add = (check: string, status: Finding['status'], detail: string, fix?: string) =>
    f.push({ check, status, detail, ...(fix ? { fix } : {}) });
  const arch = (await host.exec(['uname', '-m'])).stdout.trim() || 'unknown';

  if (!opts.skipQemu) {
    const v = await host.exec([profile.qemu.binary, '--version']);
    const version = /version (\d+\.\d+\.\d+)/.exec(v.stdout)?.[1];
    if (v.exitCode !== 0 || !version)
      add(
        'QEMU binary',
        'fail',
        `${profile.qemu.binary} does not run on ${host.name}: ${v.stderr.trim().split('\n')[0] ?? ''}`,
        'install QEMU for ppc64 (Debian: apt-get install qemu-system-ppc)',
      );
    else add('QEMU binary', 'ok', `${opts.qemuLabel ?? profile.qemu.binary} ${version}`);
  }

  if (runsUnderKvm(profile)) {
    const power = /^ppc64/.test(arch);
    if (!power)
      add(
        'KVM for pseries',
        'fail',
        `this machine is ${arch}: KVM runs a pseries guest only on a POWER host, so profile ${profile.name} cannot run here`,
        'run it on a POWER lab host, or use the emulated profile (TCG) here',
      );
    else if (!(await kvmHvReady(host))) {
      const why = await whyNoKvm(host);
      add('KVM for pseries', 'fail', `no KVM-HV: ${why.detail}`, why.fix);
    } else add('KVM for pseries', 'ok', `/dev/kvm and kvm_hv on ${arch}${await kvmHvDetail(host)}`);
  } else {
    add('accelerator', 'ok', `TCG (emulation) on ${arch}: no KVM needed`);
  }

  const vfioDevices = profile.devices.filter((d) => d.driver === 'vfio-pci');
  if (vfioDevices.length > 0) {
    const vfio = await host.listDir('/dev/vfio');
    if (!vfio?.some((e) => e.name === 'vfio'))
      add('/dev/vfio', 'fail', '/dev/vfio/vfio is missing', 'load the vfio and vfio-pci modules (modprobe vfio-pci)');
    else add('/dev/vfio', 'ok', `present (${vfio.map((e) => e.name).join(', ')})`);
    const binder = new VfioPciBinder(host);
    for (const d of opts.skipDevices ? [] : vfioDevices) {
      const bdf = d.host!;
      if ((await host.listDir(`/sys/bus/pci/devices/${bdf}`)) === undefined) {
        add(`device ${bdf}`, 'fail', `no PCI device ${bdf} on ${host.name}`, 'set TCELAB_VFIO_HOST to an address from lspci -D');
        continue;
      }
      const driver = await binder.driverOf(bdf);
      add(
        `device ${bdf}`,
        'ok',
        driver === 'vfio-pci'
          ? 'bound to vfio-pci'
          : `bound to ${driver ?? 'no driver'}; tcelab binds it to vfio-pci for the run and gives it back to ${driver ?? 'no driver'} afterwards`,
      );
      const group = await binder.groupOf(bdf);
      if (group === null) {
        add(
          `IOMMU group of ${bdf}`,
          'fail',
          'the device has no IOMMU group',
          'enable the IOMMU (on POWER it always is; elsewhere iommu=on)',
        );
        continue;
      }
      const members = (await host.listDir(`/sys/kernel/iommu_groups/${group}/devices`)) ?? [];
      const blockers: string[] = [];
      for (const m of members) {
        if (m.name === bdf) continue;
        const drv = await binder.driverOf(m.name);
        if (drv && drv !== 'vfio-pci') blockers.push(`${m.name} (${drv})`);
      }
      if (blockers.length)
        add(
          `IOMMU group ${group}`,
          'fail',
          `not viable: ${blockers.join(', ')} ${blockers.length > 1 ? 'are' : 'is'} bound to a host driver`,
          'unbind those devices too, or bind them to vfio-pci',
        );
      else
        add(`IOMMU group ${group}`, 'ok', `viable: ${members.map((m) => m.name).join(', ')} (every other member unbound or on vfio-pci)`);
    }
  }

  const needsLock = vfioDevices.length > 0 || profile.qemu.memLock;
  const pid = opts.pid ?? 'self';
  const limits = await host.readFile(`/proc/${pid}/limits`);
  const lim = limits ? parseMemlockLimit(limits) : undefined;
  const capEff = /^CapEff:\s+([0-9a-f]+)$/m.exec((await host.readFile(`/proc/${pid}/status`)) ?? '')?.[1];
  // CAP_IPC_LOCK lifts RLIMIT_MEMLOCK for mlock and for VFIO's locked_vm accounting alike.
  const ipcLock = capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_IPC_LOCK) & 1n) === 1n;
  const ramBytes = profile.qemu.memoryMiB * 1024 * 1024;
  if (!lim) add('RLIMIT_MEMLOCK', 'warn', 'could not read the limit');
  else {
    const shown = lim.soft === Infinity ? 'unlimited' : `${Math.round(lim.soft / 1024 / 1024)} MiB`;
    if (needsLock && lim.soft < ramBytes && ipcLock)
      add(
        'RLIMIT_MEMLOCK',
        'ok',
        `${shown}, but the process has CAP_IPC_LOCK, which lifts the limit (guest RAM ${profile.qemu.memoryMiB} MiB must be locked)`,
      );
    else if (needsLock && lim.soft < ramBytes)
      add(
        'RLIMIT_MEMLOCK',
        'fail',
        `${shown}, below guest RAM ${profile.qemu.memoryMiB} MiB: VFIO pre-registration (or mem-lock) of all guest RAM would fail`,
        `raise it (ulimit -l unlimited, or LimitMEMLOCK= in the service) to at least ${profile.qemu.memoryMiB} MiB`,
      );
    else
      add(
        'RLIMIT_MEMLOCK',
        'ok',
        `${shown}${needsLock ? ` (guest RAM ${profile.qemu.memoryMiB} MiB must be locked)` : ' (nothing needs locking with this profile)'}`,
      );
  }

  const meminfo = parseKbFields((await host.readFile('/proc/meminfo')) ?? '');
  const hpTotal = meminfo.get('HugePages_Total') ?? 0;
  const hpSize = meminfo.get('Hugepagesize') ?? 0;
  const hpFree = meminfo.get('HugePages_Free') ?? 0;
  const hpShown = `${hpTotal} reserved, ${hpFree} free, ${hpSize} kB each`;
  const hpNeed = hpSize ? Math.ceil((profile.qemu.memoryMiB * 1024) / hpSize) : Infinity;
  if (!profile.qemu.hugepages)
    add(
      'huge pages',
      hpTotal > 0 ? 'ok' : 'warn',
      hpShown,
      hpTotal > 0 ? undefined : 'only needed for hugetlb-backed guest RAM or 64K-page DMA windows; reserve with /proc/sys/vm/nr_hugepages',
    );
  else if (hpFree >= hpNeed) add('huge pages', 'ok', `${hpShown}: guest RAM (qemu.hugepages) needs ${hpNeed}`);
  // A lab host that is a guest reserves its own when the lab starts (scenario/run/guest-host.ts).
  else if (!host.local) add('huge pages', 'ok', `${hpShown}: guest RAM needs ${hpNeed}, which tcelab reserves in ${host.name} at launch`);
  else
    add(
      'huge pages',
      'fail',
      `${hpShown}: guest RAM (qemu.hugepages) needs ${hpNeed} free`,
      `reserve them: echo ${hpTotal + hpNeed - hpFree} > /proc/sys/vm/nr_hugepages (or set qemu.hugepages false)`,
    );

  return { host: host.name, profile: profile.name, findings: f, canRun: f.every((x) => x.status !== 'fail') };
}

/** Lines of the kernel log about KVM, newest last (the kernel says why kvm_hv would not load). */
async function kvmLogLines(host: Host): Promise<string[]> {
  const r = await host.exec(['dmesg']).catch(() => undefined);
  return (r?.stdout ?? '')
    .split('\n')
    .filter((l) => /kvm/i.test(l))
    .map((l) => l.replace(/^\[\s*[\d.]+\]\s*/, '').trim())
    .slice(-3);
}

/**
 * KVM that runs pseries guests: /dev/kvm and the kvm_hv module. /dev/kvm alone is not enough: kvm.ko creates it
 * even where kvm_hv refused to load (measured in a guest without nested HV: "Parent hypervisor does not support
 * nesting", then QEMU's KVM_CREATE_VM fails with EINVAL).
 */
export async function kvmHvReady(host: Host): Promise<boolean> {
  const dev = (await host.listDir('/dev'))?.some((e) => e.name === 'kvm') ?? false;
  return dev && (await host.listDir('/sys/module/kvm_hv')) !== undefined;
}

/** Whether this POWER machine is a guest of another hypervisor (a pSeries LPAR) or bare metal (PowerNV). */
async function platformOf(host: Host): Promise<string | undefined> {
  return /^platform\s*:\s*(\S+)/m.exec((await host.readFile('/proc/cpuinfo')) ?? '')?.[1];
}

/** Why a POWER machine has no /dev/kvm, and what to do: the module, the parent hypervisor, the kernel's own words. */
async function whyNoKvm(host: Host): Promise<{ detail: string; fix: string }> {
  const loaded = (await host.listDir('/sys/module/kvm_hv')) !== undefined;
  const platform = await platformOf(host);
  const said = await kvmLogLines(host);
  const guest = platform === 'pSeries';
  const where = guest ? 'this machine is a pSeries guest (KVM here needs nested HV from its parent)' : `platform ${platform ?? 'unknown'}`;
  const kernelSaid = said.length ? `; its kernel said: ${said.join(' | ')}` : '';
  const detail = `${loaded ? 'kvm_hv is loaded' : 'kvm_hv is not loaded'}; ${where}${kernelSaid}`;
  const fix = guest
    ? 'load kvm_hv (modprobe kvm_hv; a tcelab guest: guest.modules ["kvm_hv"] with guest.image "kvm-host"), and give this guest nested HV: ' +
      'QEMU -M pseries,cap-nested-hv=on (POWER9 under TCG, or a KVM parent whose kvm_hv has nested=1)'
    : 'load kvm_hv (modprobe kvm_hv) and check that the firmware runs Linux as the hypervisor (PowerNV, not a PowerVM LPAR)';
  return { detail, fix };
}

/** What a working KVM host says of itself: a guest (nested HV, v1 or v2) or bare metal. */
async function kvmHvDetail(host: Host): Promise<string> {
  const platform = await platformOf(host);
  if (platform !== 'pSeries') return platform ? ` (${platform})` : '';
  const said = await kvmLogLines(host);
  const v1 = said.some((l) => /falling back to nestedv1/.test(l));
  return ` (a pSeries guest with nested HV from its parent${v1 ? ', API v1' : ''})`;
}

export function formatDoctor(r: DoctorReport): string {
  const mark = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };
  return (
    `doctor: profile ${r.profile} on ${r.host}: ${r.canRun ? 'can run here' : 'cannot run here'}\n` +
    r.findings.map((x) => `  ${mark[x.status]} ${x.check}: ${x.detail}${x.fix ? `\n       → ${x.fix}` : ''}\n`).join('')
  );
}
