import { readFile } from 'node:fs/promises';
import { allconfigText, askedOptions, LAB_FRAGMENT } from '../kbuild/lab-config.js';
import { debianSourceCommit } from '../kbuild/source-kernel.js';
import { KCONFIG_OPTION, parseKernelSpec } from '../kernel/kernel-spec.js';
import { checkKernelFiles } from '../kernel/unresolvable-kernel.js';
import { InputError } from '../util/errors.js';
import { cacheDir } from '../util/paths.js';
import { StderrProgress } from '../util/progress.js';
import { resolve } from 'node:path';

/**
 * `tcelab kernel source debian-source:…`: the git repository (bare, in the cache) holding Debian's source as one
 * commit, with the spec's patches as commits on top; stdout: the repository, then the commit (a script clones the one
 * and checks out the other). The same source is the same commit on every machine.
 */
export async function kernelSourceCommand(args: { spec: string | undefined; json: boolean }): Promise<number> {
  if (!args.spec)
    throw new InputError('spec', '(none)', 'kernel source takes a debian-source: spec', 'e.g. tcelab kernel source debian-source:trixie');
  const spec = parseKernelSpec(args.spec, 'spec');
  if (spec.kind !== 'debian-source')
    throw new InputError('spec', args.spec, 'kernel source takes a debian-source: spec (a tree: is a git repository already)');
  // Its patch files are checked before the source is resolved (a mirror asked, a tree unpacked).
  checkKernelFiles(spec, { field: 'spec', text: args.spec });
  const source = await debianSourceCommit(spec, { field: 'spec', text: args.spec }, cacheDir(), new StderrProgress());
  const result = {
    gitDir: source.git.gitDir,
    commit: source.commit,
    base: source.git.base,
    describe: source.describe,
    patches: source.patches,
  };
  process.stdout.write(args.json ? `${JSON.stringify(result, null, 2)}\n` : `${result.gitDir}\n${result.commit}\n`);
  return 0;
}

/**
 * `tcelab kernel config [--kconfig-add FILE|CONFIG_X=y …] [--64k]`: the configuration tcelab builds a kernel from
 * source with — the lab's fragment as it is in the repository (each option with why it is there), the page size,
 * then the user's additions (files read and checked) — as KCONFIG_ALLCONFIG gets it over allnoconfig.
 */
export async function kernelConfigCommand(args: { kconfigAdd: string[]; pages64k: boolean; json: boolean }): Promise<number> {
  const additions = args.kconfigAdd.map((a) => {
    if (a.startsWith('CONFIG_') && !KCONFIG_OPTION.test(a))
      throw new InputError('--kconfig-add', a, 'is not CONFIG_X=y|m|n, a number or a "quoted string"');
    return a.startsWith('CONFIG_') ? a : resolve(a);
  });
  const asked = await askedOptions(args.pages64k ? 'powerpc64le-64k' : 'powerpc64le', additions);
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ fragment: LAB_FRAGMENT, options: asked }, null, 2)}\n`);
    return 0;
  }
  const page = asked.filter((o) => o.by === 'lab' && o.at.startsWith('the page size'));
  const user = asked.filter((o) => o.by === 'user');
  process.stdout.write(
    `# ${LAB_FRAGMENT}\n${await readFile(LAB_FRAGMENT, 'utf8')}\n# --- ${page[0]?.at ?? 'the page size'}\n${allconfigText(page)}` +
      (user.length
        ? `\n# --- your additions (--kconfig-add), last: a later line wins\n${user.map((o) => `# ${o.at}\n${allconfigText([o])}`).join('')}`
        : ''),
  );
  return 0;
}
