/** Replies of the guest agent (guest/agent/), as the host sees them. */
export interface PciDeviceInfo {
  address: string;
  vendor: string;
  device: string;
  driver: string | null;
  iommuGroup: number | null;
}

export interface IommuGroupInfo {
  group: number;
  vfioNode: boolean;
  devices: PciDeviceInfo[];
}

export interface AgentInfo {
  kernelRelease: string;
  machine: string;
  pageSize: number;
  hugePageSize: number;
  agentPid: number;
  vfio: { apiVersion: number; spaprTceV1: boolean; spaprTceV2: boolean } | null;
  iommuGroups: IommuGroupInfo[];
}

export interface GuestCounters {
  monotonicNs: number;
  nrFollPinAcquired: number;
  nrFollPinReleased: number;
  mlockedKb: number;
  hugePagesTotal: number;
  hugePagesFree: number;
  process?: { pid: number; alive: boolean; vmLckKb?: number; vmPinKb?: number };
  /** Asked for: the guest kernel's rcu_barrier() ran before the read (its time), or why there is none (no TUN driver). */
  rcuBarrier?: { us: number } | { error: string };
}

export interface ExecResult {
  exitCode: number;
  signal: number;
  timedOut: boolean;
  durationMs: number;
  stdout: string;
  stderr: string;
}

export interface WorkerInfo {
  worker: number;
  pid: number;
  alive: boolean;
  signal?: number;
  exitCode?: number;
}

export interface TceInfo {
  flags: number;
  ddwSupported: boolean;
  dma32WindowStart: string;
  dma32WindowSize: string;
  ddw: { pageSizes: string; maxDynamicWindows: number; levels: number };
}

export interface RegionInfo {
  region: number;
  vaddr: string;
  size: number;
  hugetlb: boolean;
}

export interface CreatedWindow {
  startAddr: string;
  windowSize: string;
  pageShift: number;
  levels: number;
}

export interface WorkerStatus {
  pid: number;
  group: number;
  containerOpen: boolean;
  groupOpen: boolean;
  vmLckKb: number;
  vmPinKb: number;
  regions: Array<RegionInfo & { registered: boolean }>;
  windows: Array<{ startAddr: string; windowSize: string; pageShift: number }>;
  holders: number[];
}

/** An open file of a process that is something to VFIO. */
export interface VfioFd {
  fd: number;
  kind: 'container' | 'group' | 'device' | 'iommufd';
  /** What the fd points to: /dev/vfio/vfio, /dev/vfio/1 (deleted), anon_inode:[vfio-device]… */
  target: string;
}

/** A guest process that can keep pages pinned or locked: VFIO fds, or VmLck/VmPin of its own. */
export interface PinHolder {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
  vmLckKb: number;
  vmPinKb: number;
  fds: VfioFd[];
}

/** What a stream-read returns: bytes since the last read (base64), and whether the stream ended. */
export interface StreamChunk {
  out: string;
  err: string;
  /** Bytes of program output dropped because the host read too slowly. */
  dropped: number;
  done: boolean;
  exitCode?: number;
  signal?: number;
}

/** What a device may do with mapped memory: read it (copies to the device), write it, or both. */
export type DmaPerm = 'rw' | 'read' | 'write';

/** A region's bytes against a seed's pattern. */
export interface PatternCheck {
  equal: boolean;
  mismatches: number;
  firstMismatch: number;
  zeroBytes: number;
  size: number;
}

/** One copy by the device's DMA engine: how long it took and how many interrupts came with it. */
export interface DmaCopy {
  direction: 'to-device' | 'from-device';
  iova: string;
  size: number;
  durationMs: number;
  irqs: number;
  irqStatus: string;
}

/**
 * How a foreign holder of a worker's container comes by it: "fork", a child of the worker (a new mm, a copy of the
 * worker's); "scm-rights", a fresh program that receives the fd over a unix socket; "pidfd-getfd", a fresh program that
 * takes it with pidfd_getfd(2); "thread", a thread of the worker (the same mm: the control).
 */
export const FOREIGN_HOWS = ['fork', 'scm-rights', 'pidfd-getfd', 'thread'] as const;
export type ForeignHow = (typeof FOREIGN_HOWS)[number];

/** The operations of VFIO_EEH_PE_OP, as the worker names them. */
export const EEH_OPS = [
  'disable',
  'enable',
  'unfreeze-io',
  'unfreeze-dma',
  'get-state',
  'reset-deactivate',
  'reset-hot',
  'reset-fundamental',
  'configure',
] as const;
export type EehOp = (typeof EEH_OPS)[number];
