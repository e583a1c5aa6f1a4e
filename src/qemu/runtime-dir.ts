import { mkdir, mkdtemp, rm, chmod, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { runtimePaths, type RuntimePaths } from './argv.js';
import { runtimeRoot } from '../util/paths.js';
import type { Host } from '../host/host.js';

/**
 * A private (0700) directory per lab: console log, transcripts, lab.json here;
 * sockets and pid file here too, or, for a lab on another host (a guest), in a
 * private dir made on that host.
 */
export async function createRuntimeDir(root = runtimeRoot(), host?: Host): Promise<RuntimePaths> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  await chmod(root, 0o700);
  const dir = await mkdtemp(join(root, 'lab-'));
  await chmod(dir, 0o700);
  if (!host || host.local) return runtimePaths(dir);
  return runtimePaths(dir, await host.makePrivateDir('/tmp/tcelab-lab-'));
}

export async function writeLabRecord(paths: RuntimePaths, record: Record<string, unknown>): Promise<void> {
  await writeFile(join(paths.dir, 'lab.json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
}

export async function removeRuntimeDir(paths: RuntimePaths): Promise<void> {
  await rm(paths.dir, { recursive: true, force: true });
}

/** Copies the run's logs and transcripts (not the sockets) to `dest`. */
export async function copyArtifacts(paths: RuntimePaths, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  await cp(paths.dir, dest, {
    recursive: true,
    filter: (src) => !src.endsWith('.sock'),
  });
}
