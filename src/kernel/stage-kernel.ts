import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { run } from '../util/exec.js';
import { filesUnder } from '../util/fs.js';
import { TcelabError } from '../util/errors.js';
import { type KernelFacts, kernelFacts } from './kernel-facts.js';

/** Where the guest's modules are taken from in a module tree (the rest of the tree is not needed). */
export const GUEST_MODULE_DIRS = ['kernel/drivers/vfio', 'kernel/drivers/pci/hotplug', 'kernel/arch/powerpc/kvm'];

/**
 * Single modules taken besides (without .ko/.ko.xz): TUN, whose device's last close is the agent's RCU barrier
 * (guest/agent/counters.c). Not loaded at boot; a kernel without it just has no barrier.
 */
export const GUEST_MODULE_FILES = ['kernel/drivers/net/tun'];

/**
 * A kernel laid out the same way whatever it came from (one Debian package, the 7.x package set, local .debs,
 * a local build): its vmlinux, its config, and the guest's part of its module tree.
 */
export interface StagedKernel {
  vmlinux: string;
  release: string;
  /** lib/modules/<release>/ of the staged tree (kernel/drivers/vfio… below it). */
  modulesDir: string;
  facts: KernelFacts;
}

/** A member of a kernel package the image needs: the kernel, its config and builtin list, the guest's modules. */
function wantedMember(path: string): boolean {
  return (
    /^\.\/boot\/(vmlinux|config)-[^/]+$/.test(path) ||
    /^\.\/usr\/lib\/modules\/[^/]+\/(vmlinuz|config|modules\.builtin)$/.test(path) ||
    GUEST_MODULE_DIRS.some((d) => new RegExp(`^\\./usr/lib/modules/[^/]+/${d.replace(/\//g, '\\/')}/.+\\.ko(\\.xz)?$`).test(path)) ||
    GUEST_MODULE_FILES.some((f) => new RegExp(`^\\./usr/lib/modules/[^/]+/${f.replace(/\//g, '\\/')}\\.ko(\\.xz)?$`).test(path))
  );
}

/** Unpacks what the image needs of Debian kernel packages (single or split layout) into `dir`. */
export async function stageKernelDebs(debs: string[], dir: string, source: KernelFacts['source']): Promise<StagedKernel> {
  await mkdir(dir, { recursive: true });
  for (const deb of debs) {
    const { stdout } = await run('bash', ['-o', 'pipefail', '-c', 'dpkg-deb --fsys-tarfile "$1" | tar -t', 'list', deb], {
      what: `list ${basename(deb)}`,
    });
    const members = stdout.split('\n').filter(wantedMember);
    if (members.length === 0) continue;
    // The member list goes in a file: tar's stdin is the archive.
    const list = `${dir}.members`;
    await writeFile(list, `${members.join('\n')}\n`);
    await run('bash', ['-o', 'pipefail', '-c', 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" -T "$3"', 'unpack', deb, dir, list], {
      what: `unpack ${basename(deb)}`,
    });
    await rm(list, { force: true });
  }
  const modRoot = join(dir, 'usr/lib/modules');
  const releases = existsSync(modRoot) ? await readdir(modRoot) : [];
  if (releases.length !== 1) {
    throw new TcelabError('stage the guest kernel', `expected the modules of one kernel release, found ${releases.join(', ') || 'none'}`);
  }
  const release = releases[0]!;
  const modulesDir = join(modRoot, release);
  const vmlinux = [join(dir, 'boot', `vmlinux-${release}`), join(modulesDir, 'vmlinuz')].find((p) => existsSync(p));
  const config = [join(dir, 'boot', `config-${release}`), join(modulesDir, 'config')].find((p) => existsSync(p));
  if (!vmlinux) throw new TcelabError('stage the guest kernel', `no vmlinux for ${release} in ${debs.map((d) => basename(d)).join(', ')}`);
  if (!config) throw new TcelabError('stage the guest kernel', `no config for ${release} in ${debs.map((d) => basename(d)).join(', ')}`);
  return { vmlinux, release, modulesDir, facts: await readFacts(release, config, modulesDir, source) };
}

/**
 * A local build: `vmlinux` and, optionally, the modules root `make modules_install INSTALL_MOD_PATH=<root>` left
 * (lib/modules/<release>/). The config is the build's .config beside vmlinux, or the one the modules tree's
 * `build` link points to.
 */
export async function stageLocalKernel(vmlinux: string, modulesRoot: string | undefined, dir: string, spec: string): Promise<StagedKernel> {
  const { release, tree, config } = await locateLocalBuild(vmlinux, modulesRoot, spec);
  const modulesDir = join(dir, 'usr/lib/modules', release);
  await mkdir(modulesDir, { recursive: true });
  if (tree) {
    for (const sub of GUEST_MODULE_DIRS) {
      if (existsSync(join(tree, sub))) await run('cp', ['-a', '--parents', sub, modulesDir], { cwd: tree, what: `copy ${sub}` });
    }
    for (const file of GUEST_MODULE_FILES.flatMap((f) => [`${f}.ko`, `${f}.ko.xz`])) {
      if (existsSync(join(tree, file))) await run('cp', ['-a', '--parents', file, modulesDir], { cwd: tree, what: `copy ${file}` });
    }
    if (existsSync(join(tree, 'modules.builtin'))) await copyFile(join(tree, 'modules.builtin'), join(modulesDir, 'modules.builtin'));
  }
  const staged = join(dir, 'vmlinux');
  await copyFile(vmlinux, staged);
  return { vmlinux: staged, release, modulesDir, facts: await readFacts(release, config, modulesDir, { spec, layout: 'local' }) };
}

/** A local build's release, its module tree (lib/modules/<release>/ under the modules root) and its .config. */
async function locateLocalBuild(
  vmlinux: string,
  modulesRoot: string | undefined,
  spec: string,
): Promise<{ release: string; tree?: string; config: string }> {
  if (!existsSync(vmlinux)) throw new TcelabError(`kernel ${spec}`, `${vmlinux} does not exist`);
  const libModules = modulesRoot ? join(modulesRoot, 'lib/modules') : undefined;
  const releases = libModules && existsSync(libModules) ? await readdir(libModules) : [];
  if (modulesRoot && releases.length !== 1) {
    throw new TcelabError(
      `kernel ${spec}`,
      `${libModules} must hold the modules of exactly one release, found ${releases.join(', ') || 'none'}`,
    );
  }
  const release = releases[0] ?? (await releaseOfVmlinux(vmlinux));
  const tree = libModules ? join(libModules, release) : undefined;
  const config = [join(dirname(vmlinux), '.config'), ...(tree ? [join(tree, 'build', '.config'), join(tree, 'config')] : [])].find((p) =>
    existsSync(p),
  );
  if (!config)
    throw new TcelabError(`kernel ${spec}`, `no kernel config: looked for .config beside ${vmlinux}${tree ? ` and in ${tree}/build` : ''}`);
  return { release, tree, config };
}

/**
 * A local build's facts read where it lies, before any image is built: what a scenario needs of the kernel is then
 * refused in a second rather than after the image's packages, agent and initramfs (the same facts the image records:
 * its modules are taken from the same directories).
 */
export async function localKernelFacts(vmlinux: string, modulesRoot: string | undefined, spec: string): Promise<KernelFacts> {
  const { release, tree, config } = await locateLocalBuild(vmlinux, modulesRoot, spec);
  return readFacts(release, config, tree, { spec, layout: 'local' });
}

/** The release string a vmlinux announces ("Linux version <release> (…)"). */
async function releaseOfVmlinux(vmlinux: string): Promise<string> {
  const { stdout } = await run('bash', ['-c', 'grep -a -m1 -o "Linux version [^ ]*" "$1"', 'release', vmlinux], {
    what: `read the release of ${vmlinux}`,
  });
  const m = /Linux version (\S+)/.exec(stdout);
  if (!m) throw new TcelabError(`kernel ${vmlinux}`, 'no "Linux version" string in it: is it a vmlinux?');
  return m[1]!;
}

async function readFacts(
  release: string,
  config: string,
  modulesDir: string | undefined,
  source: KernelFacts['source'],
): Promise<KernelFacts> {
  const moduleFiles = new Set<string>();
  for (const sub of GUEST_MODULE_DIRS) {
    for (const f of modulesDir ? await filesUnder(join(modulesDir, sub)) : []) {
      const m = /([^/]+)\.ko(\.xz)?$/.exec(f);
      if (m) moduleFiles.add(m[1]!.replace(/-/g, '_'));
    }
  }
  const builtinPath = modulesDir ? join(modulesDir, 'modules.builtin') : undefined;
  return kernelFacts({
    release,
    configText: await readFile(config, 'utf8'),
    moduleFiles,
    builtinText: builtinPath && existsSync(builtinPath) ? await readFile(builtinPath, 'utf8') : undefined,
    source,
  });
}
