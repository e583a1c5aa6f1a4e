import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describingEnv, listProfiles, loadProfile } from '../qemu/profile.js';
import { QEMU_SPEC_PATTERN, readStaged, type StagedQemu, stageDebianQemu } from '../qemu/stage-qemu.js';
import { InputError } from '../util/errors.js';
import { cacheDir } from '../util/paths.js';
import { StderrProgress } from '../util/progress.js';

/**
 * `tcelab qemu stage [debian:<suite>] [--refresh]`: stage a Debian QEMU now (default: every one the profiles name),
 * so the first lab does not pay for it; --refresh resolves the suite again (a distro update).
 * `tcelab qemu list`: the QEMUs staged on this machine.
 */
export async function qemuCommand(args: { action: 'stage' | 'list'; spec?: string; refresh: boolean; json: boolean }): Promise<number> {
  if (args.action === 'list') {
    const staged = await listStaged();
    if (args.json) process.stdout.write(`${JSON.stringify(staged, null, 2)}\n`);
    else {
      process.stdout.write(`QEMUs staged in ${join(cacheDir(), 'qemu')}: ${staged.length}\n`);
      for (const q of staged) process.stdout.write(`debian:${q.suite}  ${q.version}  ${q.packages.length} packages  ${q.binary}\n`);
    }
    return 0;
  }
  if (args.spec !== undefined && !QEMU_SPEC_PATTERN.test(args.spec))
    throw new InputError('tcelab qemu stage', args.spec, 'must be debian:<suite>, e.g. debian:trixie');
  const specs = args.spec ? [args.spec] : await specsOfProfiles();
  const progress = new StderrProgress();
  const out: StagedQemu[] = [];
  for (const spec of specs) out.push(await stageDebianQemu(spec, progress, args.refresh));
  if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else for (const q of out) process.stdout.write(`debian:${q.suite}: QEMU ${q.version} (${q.packages.length} packages): ${q.binary}\n`);
  return 0;
}

/** Every debian:<suite> QEMU a profile names. */
async function specsOfProfiles(): Promise<string[]> {
  const specs = new Set<string>();
  for (const name of await listProfiles()) {
    const binary = (await loadProfile(name, describingEnv())).qemu.binary;
    if (QEMU_SPEC_PATTERN.test(binary)) specs.add(binary);
  }
  return [...specs];
}

async function listStaged(): Promise<StagedQemu[]> {
  const base = join(cacheDir(), 'qemu');
  if (!existsSync(base)) return [];
  const out: StagedQemu[] = [];
  for (const f of (await readdir(base)).filter((x) => x.endsWith('.json')).sort()) {
    const q = await readStaged(join(base, f));
    if (q) out.push(q);
  }
  return out;
}
