import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { cacheDir } from '../util/paths.js';
import { type Profile, runsUnderKvm } from '../qemu/profile.js';
import type { RuntimePaths } from '../qemu/argv.js';
import type { SavedPciConfig } from './pci-config.js';

/**
 * Saved, booted machines. The first lab of a machine boots cold with its RAM in a shared file (tmpfs), waits for its
 * agent, and saves itself: QMP stop, a migration with x-ignore-shared (the device state only: the RAM is not copied
 * into the stream) and a sparse copy of its RAM file. Later labs of the same machine map that RAM file privately
 * (share=off: copy-on-write, their writes stay their own, one snapshot serves labs running at once) and load only
 * the device state (-incoming): nothing copies guest RAM, pages come in as the guest touches them. The key covers
 * everything that shapes the guest, so any change makes a new snapshot; a snapshot that fails to load is deleted and
 * the lab boots cold.
 */

/**
 * Bumped when what a snapshot holds, or how it is restored, changes (2: device state + a RAM file, x-ignore-shared;
 * 3: + the PCI configuration of the devices QEMU does not migrate, pci-config.ts).
 */
const FORMAT = 3;

/** The QEMU object id of a lab's guest RAM when it is a file (a lab that saves its machine, or one restored from it). */
export const RAM_BACKEND_ID = 'tcelab-ram';

/** Where a lab that will save its machine keeps its RAM while it runs: tmpfs, so that the guest's writes stay in memory. */
export const runningRamFile = (labName: string) => join('/dev/shm', `${labName}-ram`);

/**
 * QEMU arguments that put a lab's guest RAM in a file: shared for the lab that saves it (the file is the RAM), private
 * for a restored one (the file is the saved RAM; the lab's writes go to its own copies of the pages it touches).
 */
export function ramFileArgs(memoryMiB: number, path: string, share: boolean): string[] {
  return [
    '-object',
    `memory-backend-file,id=${RAM_BACKEND_ID},size=${memoryMiB}M,mem-path=${path},share=${share ? 'on' : 'off'}`,
    '-machine',
    `memory-backend=${RAM_BACKEND_ID}`,
  ];
}

export interface SnapshotMeta {
  key: string;
  format: number;
  createdAt: string;
  profile: string;
  kernelRelease: string;
  machine: string;
  /** The cold boot's spawn → init, for the record. */
  coldSpawnToInitMs: number;
  /** The console up to the save: a restored lab's kernel log starts with it. */
  bootConsole: string;
  /** What went into the key, readable. */
  inputs: Record<string, string>;
  /** The devices QEMU does not migrate: their PCI configuration at the save, written back into a restored guest. */
  deviceConfigs: SavedPciConfig[];
  bytes?: number;
}

export interface Snapshot {
  key: string;
  dir: string;
  /** The device state (a migration stream without RAM). */
  statePath: string;
  /** The guest's RAM as it was saved (a sparse file; mapped privately by each restored lab). */
  ramPath: string;
  meta: SnapshotMeta;
}

export const snapshotsDir = () => join(cacheDir(), 'snapshots');

/** Default size limit of all snapshots together; TCELAB_SNAPSHOT_LIMIT_MIB changes it. */
export function snapshotLimitBytes(env: NodeJS.ProcessEnv = process.env): number {
  const mib = Number(env.TCELAB_SNAPSHOT_LIMIT_MIB ?? 4096);
  return (Number.isFinite(mib) && mib > 0 ? mib : 4096) * 1024 * 1024;
}

const fileHashes = new Map<string, { stamp: string; hash: string }>();

/**
 * A file's sha256, remembered per path while its inode, size, mtime and ctime stay the same: in this process, and in
 * the cache for the next one (every lab start hashes its kernel, initrd and QEMU for the snapshot key: 47 MB for
 * Debian's vmlinux, about 0.1 s of CPU in each of the suite's hundred-odd CLI runs). ctime moves on any change to
 * the file, and no one can set it back.
 */
export function fileSha256(path: string): string {
  const st = statSync(path, { bigint: true });
  const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const known = fileHashes.get(path);
  if (known?.stamp === stamp) return known.hash;
  const kept = join(cacheDir(), 'file-hashes', createHash('sha256').update(path).digest('hex').slice(0, 32));
  const [keptStamp, keptHash] = (existsSync(kept) ? readFileSync(kept, 'utf8') : '').split(' ');
  const hash = keptStamp === stamp && keptHash ? keptHash : createHash('sha256').update(readFileSync(path)).digest('hex');
  fileHashes.set(path, { stamp, hash });
  if (keptStamp !== stamp) {
    // Written whole, then renamed: a reader sees the old line or the new one. A cache it cannot write only costs
    // the next process the hash again.
    try {
      mkdirSync(dirname(kept), { recursive: true });
      writeFileSync(`${kept}.${process.pid}`, `${stamp} ${hash}`);
      renameSync(`${kept}.${process.pid}`, kept);
    } catch {}
  }
  return hash;
}

/** The QEMU binary's path as the shell would find it. */
function resolveBinary(binary: string): string | undefined {
  if (binary.includes('/')) return existsSync(binary) ? binary : undefined;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = join(dir, binary);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Why a profile's labs cannot start from a snapshot (undefined: they can).
 * One entry per reason: a new one is one line.
 */
const COLD_ONLY: Array<{ applies: (p: Profile, extraArgs: string[]) => boolean; why: string }> = [
  {
    applies: (p) => p.devices.some((d) => d.driver === 'vfio-pci'),
    why: 'a host vfio-pci device cannot be migrated (its state lives in the hardware)',
  },
  { applies: (p) => !p.guest.boot, why: 'the profile boots no guest (guest.boot false): there is no booted state to save' },
  {
    applies: (p, extra) => p.qemu.startPaused || extra.includes('-S') || extra.includes('-incoming'),
    why: 'the machine is started paused (-S) or given its own -incoming',
  },
  {
    applies: (p) => runsUnderKvm(p),
    why: 'KVM labs boot cold: a KVM guest is saved against this host CPU, and KVM boots fast anyway',
  },
  {
    applies: (p) => p.qemu.hugepages,
    why: 'guest RAM on huge pages (-mem-path) is not kept in a file a restored lab could map',
  },
];

export function coldOnlyReason(profile: Profile, extraArgs: string[] = []): string | undefined {
  return COLD_ONLY.find((c) => c.applies(profile, extraArgs))?.why;
}

/**
 * QEMU migrates a TCG pseries CPU's decrementer (the POWER timer) only from 8.2 on ("target/ppc: Migrate DECR
 * SPR", Nicholas Piggin, pulled 2023-09-04: "This fixes lost decrementer interrupt on migration that can cause
 * hangs"). Before, a restored guest whose timer was armed when it was saved never gets that interrupt: measured
 * here on 7.2 as guests that never run their RCU callbacks (unregistered pre-registrations never unpinned) or whose
 * timers stop. So labs restore only with a QEMU that carries the fix.
 */
const DECREMENTER_MIGRATED_SINCE = [8, 2] as const;

/** Why a TCG lab of this QEMU must not be restored (undefined: it may be). `version` as QEMU reports it (7.2.22). */
export function restoreUnsafeReason(profile: Profile, version: string | undefined): string | undefined {
  if (profile.qemu.accel !== 'tcg') return undefined;
  const m = /^(\d+)\.(\d+)/.exec(version ?? '');
  if (!m) return `the version of ${profile.qemu.binary} could not be read: a TCG lab restores only with QEMU 8.2 or later`;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const [wantMajor, wantMinor] = DECREMENTER_MIGRATED_SINCE;
  if (major > wantMajor || (major === wantMajor && minor >= wantMinor)) return undefined;
  return (
    `QEMU ${version} does not migrate a TCG guest's decrementer (fixed in 8.2, "target/ppc: Migrate DECR SPR"): a ` +
    'restored guest can lose its timer interrupt and never run its RCU callbacks; a QEMU of 8.2 or later (--qemu) restores'
  );
}

const versions = new Map<string, string>();

/**
 * "7.2.22": a QEMU staged by tcelab (`--qemu debian:<suite>`) from its manifest, any other from `binary --version`,
 * once per binary (its path and mtime). A version not read is not remembered: the next lab asks again (seen once in
 * a suite run: the staged QEMU's --version gave nothing while two labs booted, and that lab booted cold).
 */
export function qemuVersionOf(binary: string): string | undefined {
  const path = resolveBinary(binary);
  if (!path) return undefined;
  const id = `${path} ${statSync(path).mtimeMs}`;
  const known = versions.get(id);
  if (known) return known;
  const version = stagedQemuVersion(path) ?? versionFromRunning(path);
  if (version) versions.set(id, version);
  return version;
}

/** The upstream version of a staged QEMU's package (Debian's "1:10.0.13+ds-0+deb13u1" → "10.0.13"). */
function stagedQemuVersion(wrapper: string): string | undefined {
  const manifest = join(dirname(wrapper), 'manifest.json');
  if (!existsSync(manifest)) return undefined;
  try {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { binary?: string; version?: string };
    if (m.binary !== wrapper) return undefined;
    return /^(?:\d+:)?(\d+\.\d+\.\d+)/.exec(m.version ?? '')?.[1];
  } catch {
    return undefined;
  }
}

function versionFromRunning(path: string): string | undefined {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 });
    const v = /version (\d+\.\d+\.\d+)/.exec(r.stdout ?? '')?.[1];
    if (v) return v;
  }
  return undefined;
}

/**
 * The key of a machine: QEMU's binary (content) and firmware, the argv with
 * this lab's own paths and name taken out (they differ per lab and shape
 * nothing in the guest), and the guest image's kernel and initrd (content).
 */
export function snapshotKey(
  profile: Profile,
  argv: string[],
  paths: RuntimePaths,
  labName: string,
  image: { kernel: string; initrd: string },
): { key: string; inputs: Record<string, string> } {
  const binary = resolveBinary(profile.qemu.binary);
  const vof = '/usr/share/qemu/vof.bin';
  const normalized = argv.map((a) =>
    a.split(paths.dir).join('<rundir>').split(paths.hostDir).join('<hostdir>').split(labName).join('<lab>'),
  );
  const inputs: Record<string, string> = {
    format: String(FORMAT),
    qemu: binary ? `${binary} sha256:${fileSha256(binary)}` : profile.qemu.binary,
    firmware: profile.qemu.firmware === 'vof' && existsSync(vof) ? `vof.bin sha256:${fileSha256(vof)}` : profile.qemu.firmware,
    argv: normalized.join(' '),
    kernel: `sha256:${fileSha256(image.kernel)}`,
    initrd: `sha256:${fileSha256(image.initrd)}`,
  };
  const key = createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 24);
  return { key, inputs };
}

/** The snapshot of this key, if one was saved whole; using it marks it recently used. */
export async function findSnapshot(key: string): Promise<Snapshot | undefined> {
  const dir = join(snapshotsDir(), key);
  try {
    const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as SnapshotMeta;
    if (meta.format !== FORMAT || meta.key !== key || !existsSync(join(dir, 'state')) || !existsSync(join(dir, 'ram'))) return undefined;
    const now = new Date();
    await utimes(join(dir, 'meta.json'), now, now).catch(() => {});
    return { key, dir, statePath: join(dir, 'state'), ramPath: join(dir, 'ram'), meta };
  } catch {
    return undefined;
  }
}

/** Where a new snapshot's state is written before it is published with rename(). */
export async function stagingPath(key: string): Promise<string> {
  await mkdir(snapshotsDir(), { recursive: true, mode: 0o700 });
  await chmod(snapshotsDir(), 0o700);
  return join(snapshotsDir(), `.staging-${key}-${process.pid}-${Date.now()}`);
}

/** What a file takes on disk (a sparse RAM file: only the pages the guest had touched). */
export async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}

/**
 * Publishes a saved state and RAM file as the key's snapshot (mode 0700: it holds guest
 * memory). Two labs that saved the same machine at once: the first rename wins.
 */
export async function publishSnapshot(staged: string, stagedRam: string, meta: SnapshotMeta): Promise<Snapshot | undefined> {
  const dir = join(snapshotsDir(), meta.key);
  meta.format = FORMAT;
  const tmpDir = `${staged}.d`;
  await mkdir(tmpDir, { mode: 0o700 });
  meta.bytes = (await stat(staged)).size + (await allocatedBytes(stagedRam));
  await rename(staged, join(tmpDir, 'state'));
  await rename(stagedRam, join(tmpDir, 'ram'));
  await writeFile(join(tmpDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
  try {
    await rename(tmpDir, dir);
  } catch {
    await rm(tmpDir, { recursive: true, force: true });
    return findSnapshot(meta.key);
  }
  await pruneSnapshots(snapshotLimitBytes(), meta.key);
  return findSnapshot(meta.key);
}

export async function removeSnapshot(key: string): Promise<void> {
  await rm(join(snapshotsDir(), key), { recursive: true, force: true });
}

export interface SnapshotListing {
  key: string;
  profile: string;
  kernelRelease: string;
  createdAt: string;
  lastUsed: string;
  bytes: number;
}

export async function listSnapshots(): Promise<SnapshotListing[]> {
  const root = snapshotsDir();
  if (!existsSync(root)) return [];
  const out: SnapshotListing[] = [];
  for (const name of await readdir(root)) {
    if (name.startsWith('.')) continue;
    try {
      const metaPath = join(root, name, 'meta.json');
      const meta = JSON.parse(await readFile(metaPath, 'utf8')) as SnapshotMeta;
      const used = (await stat(metaPath)).mtime.toISOString();
      out.push({
        key: name,
        profile: meta.profile,
        kernelRelease: meta.kernelRelease,
        createdAt: meta.createdAt,
        lastUsed: used,
        bytes: (await stat(join(root, name, 'state'))).size + (await allocatedBytes(join(root, name, 'ram')).catch(() => 0)),
      });
    } catch {
      out.push({ key: name, profile: '?', kernelRelease: '?', createdAt: '?', lastUsed: new Date(0).toISOString(), bytes: 0 });
    }
  }
  return out.sort((a, b) => b.lastUsed.localeCompare(a.lastUsed));
}

/** Removes the least recently used snapshots until all fit in `limitBytes` (never `keep`); returns what went. */
export async function pruneSnapshots(limitBytes: number, keep?: string): Promise<SnapshotListing[]> {
  const all = await listSnapshots();
  let total = all.reduce((s, x) => s + x.bytes, 0);
  const removed: SnapshotListing[] = [];
  for (const s of [...all].reverse()) {
    if (total <= limitBytes) break;
    if (s.key === keep) continue;
    await removeSnapshot(s.key);
    total -= s.bytes;
    removed.push(s);
  }
  // Staging leftovers of a controller that died mid-save.
  for (const name of await readdir(snapshotsDir()).catch(() => [] as string[])) {
    if (name.startsWith('.staging-')) {
      const p = join(snapshotsDir(), name);
      const age = Date.now() - (await stat(p).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > 10 * 60_000) await rm(p, { recursive: true, force: true });
    }
  }
  return removed;
}
