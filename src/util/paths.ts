import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { homedir } from 'node:os';

/** The package root: dist/util/paths.js (or src/util/paths.ts) → ../.. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const profilesDir = join(packageRoot, 'qemu-configs');
export const guestSourceDir = join(packageRoot, 'guest');

/** Cache for guest images and downloaded packages: $TCELAB_CACHE, else $XDG_CACHE_HOME/tcelab, else ~/.cache/tcelab. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TCELAB_CACHE) return resolve(env.TCELAB_CACHE);
  const base = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(base, 'tcelab');
}

/**
 * Parent of per-lab runtime dirs. Kept short: unix socket paths are limited to
 * 107 bytes, and the QMP and agent sockets live inside it.
 */
export function runtimeRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TCELAB_RUNTIME_DIR) return resolve(env.TCELAB_RUNTIME_DIR);
  const uid = process.getuid?.() ?? 0;
  return `/tmp/tcelab-${uid}`;
}
