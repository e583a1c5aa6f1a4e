import { join } from 'node:path';
import type { Profile } from './profile.js';
import { modulesAtBoot } from './modules-after-save.js';
import { traceArgs } from './trace.js';

/**
 * Files of one lab inside its private runtime dir. Logs and transcripts are
 * always on this machine (`dir`); QEMU's own files (sockets, pid file) are in
 * `hostDir` on the host that runs it, the same dir unless that is a guest.
 */
export interface RuntimePaths {
  dir: string;
  hostDir: string;
  qmpSocket: string;
  agentSocket: string;
  consoleLog: string;
  pidFile: string;
  qmpTranscript: string;
  agentTranscript: string;
  stderrLog: string;
}

export function runtimePaths(dir: string, hostDir = dir): RuntimePaths {
  return {
    dir,
    hostDir,
    qmpSocket: join(hostDir, 'qmp.sock'),
    agentSocket: join(hostDir, 'agent.sock'),
    consoleLog: join(dir, 'console.log'),
    pidFile: join(hostDir, 'qemu.pid'),
    qmpTranscript: join(dir, 'qmp-transcript.log'),
    agentTranscript: join(dir, 'agent-transcript.log'),
    stderrLog: join(dir, 'qemu-stderr.log'),
  };
}

export interface BootImage {
  kernel: string;
  initrd: string;
}

/** What a lab's QEMU is called in the process table (the kernel keeps 15 characters of it: qemu-system-ppc). */
export const QEMU_PROCESS_NAME = 'qemu-system-ppc64';

/** Where guest RAM backed by huge pages comes from (the guest image's /init mounts hugetlbfs there too). */
export const HUGEPAGES_MOUNT = '/dev/hugepages';

/** The virtio-serial port name the guest agent looks for. */
export const AGENT_PORT_NAME = 'org.tcelab.agent.0';

/**
 * The machine options a pseries needs under TCG: VOF boots in ~6 s instead of
 * ~15 s with SLOF, and the speculation caps must be declared broken because TCG
 * cannot provide the workarounds (QEMU otherwise warns on every start).
 */
const TCG_CAPS: Record<string, string> = {
  'cap-cfpc': 'broken',
  'cap-sbbc': 'broken',
  'cap-ibs': 'broken',
  'cap-ccf-assist': 'off',
};

/**
 * The guest kernel's command line: the profile's, the modules /init loads at boot (tcelab.modules=), and whether it
 * leaves out the RPA hotplug driver (tcelab.hotplug=off: guest.hotplug false).
 */
function kernelCommandLine(profile: Profile): string {
  const atBoot = modulesAtBoot(profile);
  return [
    profile.guest.append,
    ...(atBoot.length ? [`tcelab.modules=${atBoot.join(',')}`] : []),
    ...(profile.guest.hotplug ? [] : ['tcelab.hotplug=off']),
  ].join(' ');
}

/** profile → argv. Pure: no file system, no environment. `image` is unused when the profile does not boot. */
export function buildArgv(profile: Profile, paths: RuntimePaths, image: BootImage | undefined, labName: string): string[] {
  const q = profile.qemu;
  const machine: Record<string, string> = {
    ...(q.accel === 'tcg' ? TCG_CAPS : {}),
    ...(q.firmware === 'vof' ? { 'x-vof': 'on' } : {}),
    usb: 'off',
    ...q.machine,
  };
  const machineArg = ['pseries', ...Object.entries(machine).map(([k, v]) => `${k}=${v}`)].join(',');
  const argv = [
    // process=: the process table names it QEMU (comm "qemu-system-ppc", 15 characters), also when a staged QEMU
    // runs through its loader (whose name it otherwise has): `pgrep -x qemu-system-ppc` finds every lab.
    '-name',
    `${labName},process=${QEMU_PROCESS_NAME},debug-threads=on`,
    '-M',
    machineArg,
    '-accel',
    q.accel,
    '-cpu',
    q.cpu,
    '-m',
    `${q.memoryMiB}M`,
    '-smp',
    String(q.smp),
    '-nodefaults',
    '-display',
    'none',
    '-vga',
    'none',
    // The console (hvc0) is QEMU's stdout: no output is lost before a reader connects.
    '-chardev',
    'stdio,id=console,signal=off',
    '-serial',
    'chardev:console',
    '-qmp',
    `unix:${paths.qmpSocket},server=on,wait=off`,
    '-pidfile',
    paths.pidFile,
    // The host's own record of what it did for the guest (trace.ts), parsed from stderr.
    ...traceArgs(profile),
  ];
  if (profile.guest.boot) {
    if (!image) throw new Error(`profile ${profile.name} boots a guest: buildArgv needs its kernel and initrd`);
    argv.push(
      '-device',
      'virtio-serial-pci,id=vser0',
      '-chardev',
      `socket,id=agent,path=${paths.agentSocket},server=on,wait=off`,
      '-device',
      `virtserialport,bus=vser0.0,chardev=agent,name=${AGENT_PORT_NAME}`,
      '-kernel',
      image.kernel,
      '-initrd',
      image.initrd,
      '-append',
      kernelCommandLine(profile),
    );
  }
  if (q.startPaused) argv.push('-S');
  if (q.memLock) argv.push('-overcommit', 'mem-lock=on');
  if (q.hugepages) argv.push('-mem-path', HUGEPAGES_MOUNT);
  for (const phb of profile.phbs) {
    argv.push('-device', phbDeviceArg(phb));
  }
  for (const dev of profile.devices) {
    argv.push('-device', deviceArg(dev));
  }
  argv.push(...q.extraArgs);
  return argv;
}

export function phbDeviceArg(phb: Profile['phbs'][number]): string {
  const parts = [`spapr-pci-host-bridge`, `index=${phb.index}`, `id=${phb.id}`, `ddw=${phb.ddw ? 'on' : 'off'}`];
  if (phb.dmaWindowMiB !== undefined) parts.push(`dma_win_size=0x${(phb.dmaWindowMiB * 1024 * 1024).toString(16)}`);
  return parts.join(',');
}

export function deviceArg(dev: Profile['devices'][number]): string {
  const parts = [dev.driver, `bus=${dev.phb}.0`, `id=${dev.id}`];
  if (dev.host) parts.push(`host=${dev.host}`);
  for (const [k, v] of Object.entries(dev.props)) parts.push(`${k}=${v}`);
  return parts.join(',');
}
