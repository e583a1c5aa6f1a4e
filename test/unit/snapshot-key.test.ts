import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { coldOnlyReason, fileSha256, restoreUnsafeReason, snapshotKey } from '../../src/snapshot/snapshot.js';
import { validateProfile, type Profile } from '../../src/qemu/profile.js';
import { buildArgv, runtimePaths } from '../../src/qemu/argv.js';
import { scratchDir } from '../helpers/scratch.js';

const dir = scratchDir('snapkey');
const image = { kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd') };
writeFileSync(image.kernel, 'kernel');
writeFileSync(image.initrd, 'initrd');

const profile = (over: Record<string, unknown> = {}): Profile =>
  validateProfile(
    {
      qemu: { accel: 'tcg', cpu: 'power9', memoryMiB: 1024, firmware: 'vof', ...over },
      phbs: [{ id: 'phb1', index: 1, ddw: true }],
      devices: [{ id: 'edu1', driver: 'edu', phb: 'phb1' }],
    },
    'emulated',
    {},
  );

const paths = (n: string) => runtimePaths(`/tmp/tcelab-0/lab-${n}`);
const key = (p: Profile, n: string) => snapshotKey(p, buildArgv(p, paths(n), image, `tcelab-${n}`), paths(n), `tcelab-${n}`, image).key;

describe('snapshot keys', () => {
  it('two labs of one machine share a key whatever their runtime dirs and names', () => {
    expect(key(profile(), 'aaaaaa')).toBe(key(profile(), 'bbbbbb'));
  });
  it('anything that shapes the guest makes another key: RAM, machine options, the kernel', () => {
    const base = key(profile(), 'a');
    expect(key(profile({ memoryMiB: 768 }), 'a')).not.toBe(base);
    expect(key(profile({ memLock: true }), 'a')).not.toBe(base);
    writeFileSync(image.kernel, 'another kernel');
    expect(key(profile(), 'a')).not.toBe(base);
    writeFileSync(image.kernel, 'kernel');
    expect(key(profile(), 'a')).toBe(base);
  });
  it('machines that cannot be restored say why', () => {
    expect(coldOnlyReason(profile())).toBeUndefined();
    expect(coldOnlyReason(profile({ accel: 'kvm', cpu: 'host' }))).toMatch(/KVM/);
    expect(coldOnlyReason(profile(), ['-S'])).toMatch(/paused/);
  });
  it('a TCG lab restores only with a QEMU that migrates the decrementer (8.2 on)', () => {
    expect(restoreUnsafeReason(profile(), '7.2.22')).toMatch(/QEMU 7\.2\.22 does not migrate a TCG guest's decrementer \(fixed in 8\.2/);
    expect(restoreUnsafeReason(profile(), '8.1.5')).toMatch(/8\.1\.5/);
    expect(restoreUnsafeReason(profile(), '8.2.0')).toBeUndefined();
    expect(restoreUnsafeReason(profile(), '10.0.13')).toBeUndefined();
    expect(restoreUnsafeReason(profile(), undefined)).toMatch(/could not be read/);
    expect(restoreUnsafeReason(profile({ accel: 'kvm', cpu: 'host' }), '7.2.22')).toBeUndefined();
  });
});

describe("a file's hash, kept for the next process", () => {
  it('is kept with the file’s inode, size and times, and computed again once it changes, even to the same mtime', () => {
    const cache = scratchDir('hashcache');
    const before = process.env.TCELAB_CACHE;
    process.env.TCELAB_CACHE = cache;
    try {
      const file = join(scratchDir('hashfile'), 'vmlinux');
      writeFileSync(file, 'first');
      const first = fileSha256(file);
      expect(first).toBe(createHash('sha256').update('first').digest('hex'));
      // Kept for the next process: the file's identity and times, then its hash.
      const kept = readdirSync(join(cache, 'file-hashes'));
      expect(kept).toHaveLength(1);
      expect(readFileSync(join(cache, 'file-hashes', kept[0]!), 'utf8')).toMatch(new RegExp(`^\\d+:\\d+:5:\\d+:\\d+ ${first}$`));
      const { mtime } = statSync(file);
      writeFileSync(file, 'other');
      utimesSync(file, mtime, mtime);
      // Same size, same mtime, other content: its ctime moved, so it is hashed again.
      expect(fileSha256(file)).toBe(createHash('sha256').update('other').digest('hex'));
    } finally {
      if (before === undefined) delete process.env.TCELAB_CACHE;
      else process.env.TCELAB_CACHE = before;
    }
  });
});
