import { describe, expect, it } from 'vitest';
import { labLockedKb } from '../../src/probes/lab-cgroup.js';

const v1 = (unevictable: number, rss: number, shmem: number) =>
  `cache 0\nrss 0\ntotal_cache 4096\ntotal_rss ${rss}\ntotal_shmem ${shmem}\ntotal_unevictable ${unevictable}\n`;

describe("a lab's mlocked memory from its cgroup's memory.stat", () => {
  it('is its unevictable memory while that is anonymous or shared memory', () => {
    expect(labLockedKb(v1(64 << 20, 70 << 20, 0), 'total_unevictable')).toBe(65536);
    expect(labLockedKb('anon 1048576\nshmem 1048576\nunevictable 2097152\n', 'unevictable')).toBe(2048);
  });
  it('leaves out page cache the lab faulted first and a neighbour locks (no process of the lab left: no anonymous memory)', () => {
    expect(labLockedKb(v1(1304 << 10, 0, 0), 'total_unevictable')).toBe(0);
  });
  it('is the unevictable memory where the anonymous counters are missing, and undefined without it', () => {
    expect(labLockedKb('total_unevictable 2097152\n', 'total_unevictable')).toBe(2048);
    expect(labLockedKb('total_rss 1\n', 'total_unevictable')).toBeUndefined();
  });
});
