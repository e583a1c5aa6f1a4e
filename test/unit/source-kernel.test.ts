import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { pruneKernelBuilds } from '../../src/kbuild/prune-builds.js';
import { markUsed } from '../../src/util/mark-used.js';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitTreeContent, withExportedCommit } from '../../src/kbuild/git-tree.js';
import { allconfigText, askedOptions, LAB_FRAGMENT, parseFragment, unmetOptions, unmetOptionsError } from '../../src/kbuild/lab-config.js';
import {
  formatKernelSpec,
  kernelKey,
  parseKernelSpec,
  splitKernelList,
  type SourceKernelSpec,
  withKconfigAdditions,
} from '../../src/kernel/kernel-spec.js';
import { KERNEL_PATCHES } from '../../src/kbuild/source-kernel.js';
import { applySeries, debianSourceGit, patchSeries, repositoryPatches } from '../../src/kbuild/source-git.js';
import { checkKernelFiles } from '../../src/kernel/unresolvable-kernel.js';
import { InputError, TcelabError } from '../../src/util/errors.js';
import { silentProgress } from '../../src/util/progress.js';
import { scratchDir } from '../helpers/scratch.js';

const hash = () => 'abcdef0123456789';
const thrown = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
};

describe('kernels built from source: specs', () => {
  it('parses trees at a ref or as they stand, Debian sources by suite or version, page sizes and kconfig additions', () => {
    expect(parseKernelSpec('tree:/src/linux@v6.12')).toEqual({
      kind: 'tree',
      path: '/src/linux',
      ref: 'v6.12',
      flavour: 'powerpc64le',
      kconfig: [],
    });
    expect(parseKernelSpec('tree:/src/linux,64k,kconfig=CONFIG_KASAN=y,kconfig=/f/k.config')).toEqual({
      kind: 'tree',
      path: '/src/linux',
      flavour: 'powerpc64le-64k',
      kconfig: ['CONFIG_KASAN=y', '/f/k.config'],
    });
    expect(parseKernelSpec('tree:linux')).toMatchObject({ path: join(process.cwd(), 'linux') });
    expect(parseKernelSpec('debian-source:trixie')).toEqual({
      kind: 'debian-source',
      target: { suite: 'trixie' },
      flavour: 'powerpc64le',
      kconfig: [],
      repoPatches: false,
      patches: [],
    });
    expect(parseKernelSpec('debian-source:6.12.107+patches/64k,patches=/p/0001-x.patch')).toMatchObject({
      target: { version: '6.12.107' },
      flavour: 'powerpc64le-64k',
      repoPatches: true,
      patches: ['/p/0001-x.patch'],
    });
    expect(parseKernelSpec('debian-source:6.12.107/64k')).toMatchObject({ target: { version: '6.12.107' }, flavour: 'powerpc64le-64k' });
    expect(parseKernelSpec('debian-source:7.3~rc7,64k')).toMatchObject({ target: { version: '7.3~rc7' }, flavour: 'powerpc64le-64k' });
    expect(parseKernelSpec('debian-source:sid,kconfig=CONFIG_CMDLINE="a b"').kind).toBe('debian-source');
    for (const text of [
      'tree:/s@main,64k,kconfig=CONFIG_KASAN=y',
      'tree:/s',
      'debian-source:trixie/64k',
      'debian-source:6.12.107,kconfig=/f',
      'debian-source:6.12.107+patches',
      'debian-source:trixie+patches/64k,kconfig=CONFIG_A=y,patches=/p',
    ])
      expect(formatKernelSpec(parseKernelSpec(text))).toBe(text);
    // ,64k and /64k say the same for debian-source.
    expect(formatKernelSpec(parseKernelSpec('debian-source:trixie,64k'))).toBe('debian-source:trixie/64k');
  });

  it('names each for its image dir: Debian sources by suite or version, trees by a hash of the spec', () => {
    expect(kernelKey(parseKernelSpec('debian-source:trixie'), hash)).toBe('src-trixie');
    expect(kernelKey(parseKernelSpec('debian-source:6.12.107/64k'), hash)).toBe('src-6.12.107-64k');
    expect(kernelKey(parseKernelSpec('debian-source:7.3~rc7'), hash)).toBe('src-7.3_rc7');
    expect(kernelKey(parseKernelSpec('debian-source:6.12.107+patches'), hash)).toBe('src-6.12.107+patches');
    expect(kernelKey(parseKernelSpec('debian-source:6.12.107,patches=/p'), hash)).toBe('src-6.12.107-pabcdef01');
    expect(kernelKey(parseKernelSpec('debian-source:trixie,kconfig=CONFIG_KASAN=y'), hash)).toBe('src-trixie-kabcdef01');
    expect(kernelKey(parseKernelSpec('tree:/s@v1'), hash)).toBe('tree-abcdef012345');
    expect(kernelKey(parseKernelSpec('tree:/s@v1'))).not.toBe(kernelKey(parseKernelSpec('tree:/s@v2')));
  });

  it('refuses bad specs, naming the option', () => {
    for (const bad of [
      'tree:',
      'tree:@v1',
      'tree:/s@',
      'tree:/s@a b',
      'tree:/s,16k',
      'tree:/s,kconfig=CONFIG_KASAN',
      'tree:/s,kconfig=',
      'debian-source:',
      'debian-source:Trixie',
      'debian-source:6.x',
      'debian-source:trixie/16k',
      'debian-source:trixie+patch',
      'debian-source:trixie,patches=',
      'tree:/s,patches=/p',
      'source:trixie',
    ]) {
      const err = thrown(() => parseKernelSpec(bad));
      expect(err, bad).toBeInstanceOf(InputError);
      expect((err as InputError).message, bad).toMatch(/^--kernel: /);
    }
  });

  it('--kconfig-add goes into a source kernel’s spec, and is bad input for a kernel that is built already', () => {
    expect(withKconfigAdditions('debian-source:trixie', ['CONFIG_KASAN=y', '/f/x.config'])).toBe(
      'debian-source:trixie,kconfig=CONFIG_KASAN=y,kconfig=/f/x.config',
    );
    expect(withKconfigAdditions('debian:trixie', [])).toBe('debian:trixie');
    const err = thrown(() => withKconfigAdditions('debian:trixie', ['CONFIG_KASAN=y'])) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe(
      '--kconfig-add: CONFIG_KASAN=y: the kernel debian:trixie is built already: kconfig additions apply to kernels tcelab builds from source',
    );
    expect(thrown(() => withKconfigAdditions('tree:/s', ['CONFIG_X']))).toBeInstanceOf(InputError);
  });

  it('--kernels keeps the commas of a spec in it', () => {
    expect(splitKernelList('debian:trixie,tree:/s@v1,64k,kconfig=CONFIG_A=y,local:/v,/m,debian-source:6.12.107')).toEqual([
      'debian:trixie',
      'tree:/s@v1,64k,kconfig=CONFIG_A=y',
      'local:/v,/m',
      'debian-source:6.12.107',
    ]);
    // After a debian: spec (no comma parts) a part is a spec of its own, so a bad one is named by itself.
    expect(splitKernelList('debian:trixie,nope')).toEqual(['debian:trixie', 'nope']);
  });

  it('a tree or a fragment that is not there is bad input, before anything runs', () => {
    const dir = scratchDir('kernel-files');
    const why = (text: string) =>
      (thrown(() => checkKernelFiles(parseKernelSpec(text), { field: '--kernel', text })) as InputError | undefined)?.why;
    expect(why(`tree:${dir}/nope`)).toBe(`${dir}/nope does not exist (the kernel source tree)`);
    expect(why(`tree:${dir},kconfig=${dir}/k.config`)).toBe(`${dir}/k.config does not exist (a kconfig fragment)`);
    expect(why(`debian-source:trixie,kconfig=${dir}/k.config`)).toBe(`${dir}/k.config does not exist (a kconfig fragment)`);
    expect(why(`tree:${dir},kconfig=CONFIG_A=y`)).toBeUndefined();
    expect(why(`debian-source:trixie,patches=${dir}/0001.patch`)).toBe(
      `${dir}/0001.patch does not exist (a patch or a directory of patches)`,
    );
    expect(why(`debian-source:trixie,patches=${dir}`)).toBeUndefined();
  });
});

describe('the lab fragment and the options asked for', () => {
  it('every option of kernel-configs/lab.config says why it is there, and the lab needs are in it', async () => {
    const text = readFileSync(LAB_FRAGMENT, 'utf8');
    const lab = parseFragment(text, 'lab.config', 'lab');
    const lines = text.split('\n');
    for (const o of lab) {
      const i = Number(o.at.split(':')[1]) - 1;
      // A comment on the line above, or above the group it opens (a blank line or a comment before a run of options).
      let j = i - 1;
      while (j >= 0 && /^CONFIG_/.test(lines[j]!)) j--;
      expect(lines[j], `${o.name} has no comment above it or its group`).toMatch(/^#/);
    }
    const names = new Map(lab.map((o) => [o.name, o.value]));
    for (const [name, value] of Object.entries({
      CONFIG_PPC_PSERIES: 'y',
      CONFIG_PPC_POWERNV: 'y',
      CONFIG_PPC_OF_BOOT_TRAMPOLINE: 'y',
      // Booted with the hash MMU, a TCG guest has no huge pages, and nested KVM-HV needs radix.
      CONFIG_PPC_RADIX_MMU_DEFAULT: 'y',
      CONFIG_HVC_CONSOLE: 'y',
      CONFIG_VIRTIO_CONSOLE: 'y',
      CONFIG_PCI_MSI: 'y',
      CONFIG_RD_GZIP: 'y',
      CONFIG_DEVTMPFS: 'y',
      CONFIG_SPAPR_TCE_IOMMU: 'y',
      CONFIG_VFIO: 'm',
      CONFIG_VFIO_CONTAINER: 'y',
      CONFIG_VFIO_IOMMU_SPAPR_TCE: 'm',
      CONFIG_VFIO_PCI: 'm',
      CONFIG_HOTPLUG_PCI_RPA_DLPAR: 'm',
      CONFIG_HUGETLBFS: 'y',
      CONFIG_MEMCG: 'y',
      CONFIG_PSI: 'y',
      CONFIG_KVM_BOOK3S_64_HV: 'm',
      CONFIG_ALTIVEC: 'y',
      CONFIG_VSX: 'y',
      CONFIG_MODULES: 'y',
    }))
      expect(names.get(name), name).toBe(value);
  });

  it('the page size and the user’s additions come after the lab’s, and a later line wins', async () => {
    const dir = scratchDir('kconfig');
    writeFileSync(join(dir, 'k.config'), '# mine\nCONFIG_KASAN=y\n# CONFIG_PSI is not set\nCONFIG_CMDLINE="quiet a=1"\n');
    const asked = await askedOptions('powerpc64le-64k', ['CONFIG_NR_CPUS=4', join(dir, 'k.config')]);
    const user = asked.filter((o) => o.by === 'user');
    expect(user).toEqual([
      { name: 'CONFIG_NR_CPUS', value: '4', by: 'user', at: '--kconfig-add' },
      { name: 'CONFIG_KASAN', value: 'y', by: 'user', at: `${dir}/k.config:2` },
      { name: 'CONFIG_PSI', value: 'n', by: 'user', at: `${dir}/k.config:3` },
      { name: 'CONFIG_CMDLINE', value: 'quiet a=1', by: 'user', at: `${dir}/k.config:4` },
    ]);
    const text = allconfigText(asked);
    expect(text.indexOf('CONFIG_PPC_64K_PAGES=y')).toBeGreaterThan(text.indexOf('CONFIG_VFIO=m'));
    expect(text.trim().split('\n').slice(-4)).toEqual(['CONFIG_NR_CPUS=4', 'CONFIG_KASAN=y', 'CONFIG_PSI=n', 'CONFIG_CMDLINE="quiet a=1"']);
    writeFileSync(join(dir, 'bad.config'), 'CONFIG_A=y\nKASAN=y\n');
    const err = await askedOptions('powerpc64le', [join(dir, 'bad.config')]).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).why).toBe('line 2: "KASAN=y" is not CONFIG_X=y|m|n, a number or a "quoted string"');
  });

  it('names every option that did not come out as asked: the user’s are bad input, the lab’s an error of the tree', () => {
    const asked = [
      ...parseFragment('CONFIG_VFIO=m\nCONFIG_PSI=y\nCONFIG_OLD_NAME=y\n', 'lab.config', 'lab'),
      ...parseFragment('CONFIG_PSI=n\nCONFIG_KASAN=y\n', 'mine.config', 'user'),
    ];
    const config = 'CONFIG_VFIO=y\nCONFIG_PSI=y\n# CONFIG_KASAN is not set\n';
    const unmet = unmetOptions(asked, config);
    expect(unmet.map((u) => `${u.asked.name} ${u.asked.by} ${u.got}`)).toEqual([
      'CONFIG_VFIO lab y',
      'CONFIG_PSI user y',
      'CONFIG_OLD_NAME lab not set',
      'CONFIG_KASAN user not set',
    ]);
    const user = unmetOptionsError(unmet, 'linux-source-6.12 6.12.107-1');
    expect(user).toBeInstanceOf(InputError);
    expect(user.message).toMatch(/^--kconfig-add: mine\.config:1, mine\.config:2: /);
    expect(user.why).toContain('CONFIG_KASAN=y (mine.config:2) came out not set');
    const lab = unmetOptionsError(
      unmet.filter((u) => u.asked.by === 'lab'),
      'linux-source-6.12 6.12.107-1',
    );
    expect(lab).not.toBeInstanceOf(InputError);
    expect(lab).toBeInstanceOf(TcelabError);
    expect(lab.message).toBe(
      'configure linux-source-6.12 6.12.107-1 for the lab: CONFIG_VFIO=m (lab.config:1) came out y; CONFIG_OLD_NAME=y (lab.config:3) came out not set',
    );
    expect(unmetOptions(parseFragment('CONFIG_A=n\nCONFIG_B="x y"\n', 'f', 'lab'), 'CONFIG_B="x y"\n')).toEqual([]);
  });
});

describe('a git tree’s content, as the cache key of its build', () => {
  const sh = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd, encoding: 'utf8' }).trim();
  const repo = () => {
    const dir = scratchDir('tree');
    mkdirSync(join(dir, 'arch', 'powerpc'), { recursive: true });
    writeFileSync(join(dir, 'Kconfig'), 'mainmenu "x"\n');
    writeFileSync(join(dir, 'arch', 'powerpc', 'a.c'), 'int a;\n');
    sh(dir, 'init', '-q');
    sh(dir, 'add', '-A');
    sh(dir, 'commit', '-qm', 'one');
    return dir;
  };
  const spec = (text: string) => parseKernelSpec(text) as Extract<SourceKernelSpec, { kind: 'tree' }>;
  const content = (text: string) => gitTreeContent(spec(text), { field: '--kernel', text });

  it('is the commit at a ref, or the HEAD and a hash of local changes for the tree as it stands', async () => {
    const dir = repo();
    const head = sh(dir, 'rev-parse', 'HEAD');
    expect(await content(`tree:${dir}@HEAD`)).toMatchObject({ commit: head, key: head, dirty: false });
    expect(await content(`tree:${dir}`)).toMatchObject({ key: head, dirty: false });
    writeFileSync(join(dir, 'arch', 'powerpc', 'a.c'), 'int a = 1;\n');
    const edited = await content(`tree:${dir}`);
    expect(edited.dirty).toBe(true);
    expect(edited.key).toMatch(new RegExp(`^${head}\\+[0-9a-f]{16}$`));
    writeFileSync(join(dir, 'new.c'), 'int b;\n');
    const untracked = await content(`tree:${dir}`);
    expect(untracked.key).not.toBe(edited.key);
    // A ref's content ignores the tree's local changes.
    expect((await content(`tree:${dir}@HEAD`)).key).toBe(head);
  });

  it('a path that is not a git tree, or a ref it does not have, is bad input naming the spec', async () => {
    const dir = repo();
    const plain = scratchDir('tree');
    const notGit = await content(`tree:${plain}`).catch((e) => e);
    expect(notGit).toBeInstanceOf(InputError);
    expect(notGit.message).toBe(`--kernel: tree:${plain}: ${plain} is not a git tree`);
    const badRef = await content(`tree:${dir}@v9.9`).catch((e) => e);
    expect(badRef).toBeInstanceOf(InputError);
    expect(badRef.why).toBe(`${dir} has no commit "v9.9"`);
    expect(badRef.hint).toMatch(/^some of its refs, newest first: (master|main)/);
  });

  it('a commit is exported into the cache and moved from commit to commit, rewriting only the files that differ', async () => {
    const dir = repo();
    const first = sh(dir, 'rev-parse', 'HEAD');
    writeFileSync(join(dir, 'arch', 'powerpc', 'b.c'), 'int b;\n');
    sh(dir, 'add', '-A');
    sh(dir, 'commit', '-qm', 'two');
    const second = sh(dir, 'rev-parse', 'HEAD');
    const cache = scratchDir('cache');
    const at = (repoDir: string, commit: string) =>
      withExportedCommit(repoDir, commit, commit, cache, silentProgress, async (t) => {
        const b = join(t.dir, 'arch', 'powerpc', 'b.c');
        return { ...t, kconfigTime: statSync(join(t.dir, 'Kconfig')).mtimeMs, b: existsSync(b) ? readFileSync(b, 'utf8') : undefined };
      });
    const old = await at(dir, first);
    expect(old.commit).toBe(first);
    expect(old.b).toBeUndefined();
    const now = await at(dir, second);
    expect(now.dir).toBe(old.dir);
    expect(now.b).toBe('int b;\n');
    // An unchanged file keeps its time: make rebuilds only what the commits changed.
    expect(now.kconfigTime).toBe(old.kconfigTime);
    // The user's repository is not touched: its index and work tree are as they were.
    expect(sh(dir, 'status', '--porcelain')).toBe('');
    // A clone with a commit of its own on top shares the export (the same root): its build dir is the same.
    const clone = scratchDir('clone');
    execFileSync('git', ['clone', '-q', '--shared', dir, clone]);
    writeFileSync(join(clone, 'arch', 'powerpc', 'b.c'), 'int b = 2;\n');
    sh(clone, 'commit', '-qam', 'three');
    const mine = await at(clone, sh(clone, 'rev-parse', 'HEAD'));
    expect(mine.dir).toBe(old.dir);
    expect(mine.b).toBe('int b = 2;\n');
  });
});

describe("Debian's source as a git repository, with patch series", () => {
  /** A tiny "unpacked source" and a series made from it with git format-patch. */
  function sourceAndSeries() {
    const root = scratchDir('srcgit');
    const tree = join(root, 'pkg', 'tree');
    mkdirSync(join(tree, 'drivers'), { recursive: true });
    writeFileSync(join(tree, 'drivers', 'x.c'), 'int x = 1;\n');
    writeFileSync(join(tree, '.gitignore'), '*.o\n');
    writeFileSync(join(tree, 'shipped.o'), 'an ignored name, shipped all the same\n');
    const work = join(root, 'work');
    execFileSync('cp', ['-a', tree, work]);
    const g = (...a: string[]) =>
      execFileSync('git', ['-c', 'user.email=a@b', '-c', 'user.name=A Dev', ...a], {
        cwd: work,
        encoding: 'utf8',
        // The same patch text from both calls (a second may pass between them).
        env: { ...process.env, GIT_AUTHOR_DATE: '@1700000000 +0000', GIT_COMMITTER_DATE: '@1700000000 +0000' },
      }).trim();
    g('init', '-q');
    g('add', '-A', '-f');
    g('commit', '-qm', 'base');
    writeFileSync(join(work, 'drivers', 'x.c'), 'int x = 2;\n');
    g('commit', '-qam', 'drivers: x is two\n\nBecause one was wrong.');
    const patches = join(root, 'patches');
    g('format-patch', '-q', '-o', patches, 'HEAD~1');
    return { root, tree, patches };
  }
  const describeTree = (dir: string) => ({ dir, describe: 'linux-source-0.1 0.1-1', key: 'k' });

  it('commits the source the same way everywhere, ignored names included, and applies a series as commits', async () => {
    const a = sourceAndSeries();
    const b = sourceAndSeries();
    const ga = await debianSourceGit(describeTree(a.tree), silentProgress);
    const gb = await debianSourceGit(describeTree(b.tree), silentProgress);
    expect(ga.base).toBe(gb.base);
    expect(execFileSync('git', [`--git-dir=${ga.gitDir}`, 'ls-tree', '-r', '--name-only', ga.base], { encoding: 'utf8' })).toContain(
      'shipped.o',
    );
    const files = await patchSeries([a.patches], '--kernel', 'x');
    const sa = await applySeries(ga, files, '--kernel', 'x', silentProgress);
    const sb = await applySeries(gb, await patchSeries([b.patches], '--kernel', 'x'), '--kernel', 'x', silentProgress);
    expect(sa.head).toBe(sb.head);
    expect(sa.commits.map((c) => c.subject)).toEqual(['drivers: x is two']);
    expect(execFileSync('git', [`--git-dir=${ga.gitDir}`, 'show', `${sa.head}:drivers/x.c`], { encoding: 'utf8' })).toBe('int x = 2;\n');
    expect(execFileSync('git', [`--git-dir=${ga.gitDir}`, 'log', '-1', '--format=%an|%b', sa.head], { encoding: 'utf8' }).trim()).toBe(
      'A Dev|Because one was wrong.',
    );
    // Asked again: the same commits, remembered.
    expect((await applySeries(ga, files, '--kernel', 'x', silentProgress)).head).toBe(sa.head);
  });

  it('a patch that does not apply, or a directory without patches, is bad input naming it', async () => {
    const a = sourceAndSeries();
    const g = await debianSourceGit(describeTree(a.tree), silentProgress);
    const files = await patchSeries([a.patches], '--kernel', 'x');
    const twice = await applySeries(g, [...files, ...files], '--kernel', 'x', silentProgress).catch((e) => e);
    expect(twice).toBeInstanceOf(InputError);
    expect(twice.why).toMatch(/^0001-drivers-x-is-two\.patch does not apply to [0-9a-f]{12}: /);
    const empty = scratchDir('nopatches');
    expect((await patchSeries([empty], '--kernel', 'x').catch((e) => e)).why).toBe(`${empty} holds no *.patch file`);
    expect((await repositoryPatches(KERNEL_PATCHES, '9.9.9', '--kernel', 'x').catch((e) => e)).hint).toMatch(/6\.12\.107/);
  });
});

describe('the cache of kernel builds', () => {
  it('keeps the most recently used exports and build dirs, never one being built', async () => {
    const cache = scratchDir('prune');
    const exportDir = (i: number) => join(cache, 'kernel-source', `tree-${String(i).padStart(12, '0')}`);
    for (let i = 0; i < 6; i++) {
      mkdirSync(join(exportDir(i), 'src'), { recursive: true });
      mkdirSync(join(cache, 'kernel-build', 'trees', `tree-${i}-4k`), { recursive: true });
      // i = 0 is the oldest.
      const at = new Date(Date.now() - (10 - i) * 60_000);
      utimesSync(exportDir(i), at, at);
      utimesSync(join(cache, 'kernel-build', 'trees', `tree-${i}-4k`), at, at);
    }
    // The oldest export is being built from: its lock is held.
    mkdirSync(`${exportDir(0)}.lock`);
    const removed = await pruneKernelBuilds(cache);
    expect(removed.sort()).toEqual([exportDir(1)]);
    await markUsed(exportDir(2));
    mkdirSync(join(exportDir(9), 'src'), { recursive: true });
    expect((await pruneKernelBuilds(cache)).sort()).toEqual([exportDir(3)]);
  });
});
