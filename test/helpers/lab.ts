import { mkdtempSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadProfile, type Profile } from '../../src/qemu/profile.js';
import { requireGuestImage, type GuestImage } from '../../src/image/image-builder.js';

/** Every test's runtime root starts with this, so leftovers can be attributed to the suite. */
export const TEST_ROOT_PREFIX = `/tmp/tcelab-t-${process.env.TCELAB_TEST_RUN ?? process.pid}-`;

/** A runtime root of this test file's own, so leftovers can be attributed. */
export function testRuntimeRoot(): string {
  return mkdtempSync(TEST_ROOT_PREFIX);
}

export function runtimeDirsIn(root: string): string[] {
  return existsSync(root) ? readdirSync(root).map((d) => join(root, d)) : [];
}

export async function emulatedLabInputs(): Promise<{ profile: Profile; image: GuestImage }> {
  const profile = await loadProfile('emulated');
  const image = await requireGuestImage('base');
  return { profile, image };
}
