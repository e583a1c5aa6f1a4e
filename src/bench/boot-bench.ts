import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { writeCpio } from '../image/cpio.js';
import { readCpio } from '../image/cpio.js';
import { gunzipSync } from 'node:zlib';
import type { GuestImage } from '../image/image-cache.js';
import type { Profile } from '../qemu/profile.js';
import { Lab } from '../lab/lab.js';

/**
 * The boot floor: spawn to the first line of a minimal /init (busybox echo)
 * with the same kernel, firmware and machine, against tcelab's spawn to
 * agent-ready. The minimal initramfs is cut from the real one: same busybox.
 */
export async function floorInitrd(image: GuestImage): Promise<string> {
  const entries = readCpio(gunzipSync(await readFile(image.initrd)));
  const busybox = entries.find((e) => e.name === 'usr/bin/busybox')!;
  const dir = await mkdtemp(join(tmpdir(), 'tcelab-floor-'));
  const path = join(dir, 'floor.cpio.gz');
  await writeFile(
    path,
    gzipSync(
      writeCpio([
        {
          path: '/init',
          type: 'file',
          mode: 0o755,
          data: Buffer.from('#!/bin/busybox sh\necho FLOOR-READY\nexec /bin/busybox poweroff -f\n'),
        },
        { path: '/bin', type: 'dir' },
        { path: '/bin/busybox', type: 'file', mode: 0o755, data: busybox.data },
        { path: '/dev', type: 'dir' },
        { path: '/dev/console', type: 'char', major: 5, minor: 1 },
      ]),
    ),
  );
  return path;
}

/**
 * Spawn → ready of one lab: the floor's first line, or the agent's answer (booted cold, or restored from a snapshot).
 * With snapshots 'use' the lab must restore, unless `saving` (the warm-up that boots cold and saves the machine).
 */
export async function bootOnce(
  profile: Profile,
  image: GuestImage,
  how: { floor?: string; snapshots: 'use' | 'off'; saving?: boolean },
): Promise<number> {
  const floor = how.floor;
  const lab = await Lab.launch(profile, {
    image: floor ? { kernel: image.kernel, initrd: floor } : image,
    snapshots: floor ? 'off' : how.snapshots,
  });
  if (!floor && how.snapshots === 'use' && !how.saving && lab.start.how !== 'restored') {
    await lab.close();
    throw new Error(`expected a restore, but the lab booted cold (${lab.start.why})`);
  }
  try {
    if (floor) {
      await lab.process.console.waitFor(/FLOOR-READY/, { timeoutMs: 120_000, what: 'the floor init' });
      return Date.now() - lab.spawnedAt;
    }
    await lab.waitForGuestInit();
    await lab.agent();
    return Date.now() - lab.spawnedAt;
  } finally {
    await lab.close();
  }
}

export async function cleanupFloor(path: string): Promise<void> {
  await rm(join(path, '..'), { recursive: true, force: true });
}
