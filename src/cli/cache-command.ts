import { listSnapshots, pruneSnapshots, snapshotLimitBytes, snapshotsDir, type SnapshotListing } from '../snapshot/snapshot.js';
import { InputError } from '../util/errors.js';

const MiB = 1024 * 1024;
const row = (s: SnapshotListing) =>
  `${s.key}  ${(s.bytes / MiB).toFixed(0).padStart(5)} MiB  ${s.profile.padEnd(16)} ` +
  `${s.kernelRelease.padEnd(28)} created ${s.createdAt}  last used ${s.lastUsed}\n`;

/** `tcelab cache [list|prune]`: the snapshots labs start from. */
export async function cacheCommand(args: { action: 'list' | 'prune'; all: boolean; limitMiB?: number; json: boolean }): Promise<number> {
  if (args.limitMiB !== undefined && (!Number.isFinite(args.limitMiB) || args.limitMiB < 0))
    throw new InputError('tcelab cache', '--limit', `must be a number of MiB, 0 or more, got ${args.limitMiB}`);
  if (args.action === 'list') {
    const all = await listSnapshots();
    const total = all.reduce((s, x) => s + x.bytes, 0);
    if (args.json)
      process.stdout.write(
        `${JSON.stringify({ dir: snapshotsDir(), limitBytes: snapshotLimitBytes(), totalBytes: total, snapshots: all }, null, 2)}\n`,
      );
    else {
      process.stdout.write(
        `snapshots in ${snapshotsDir()}: ${all.length}, ${(total / MiB).toFixed(0)} MiB of ${(snapshotLimitBytes() / MiB).toFixed(0)} MiB allowed\n`,
      );
      for (const s of all) process.stdout.write(row(s));
    }
    return 0;
  }
  const limit = args.all ? 0 : args.limitMiB !== undefined ? args.limitMiB * MiB : snapshotLimitBytes();
  const removed = await pruneSnapshots(limit);
  if (args.json) process.stdout.write(`${JSON.stringify({ removed }, null, 2)}\n`);
  else process.stdout.write(removed.length ? `removed ${removed.length}:\n${removed.map(row).join('')}` : 'nothing to remove\n');
  return 0;
}
