import { lstat, readFile, readlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { GUEST_MODULES } from '../kernel/kernel-facts.js';
import { GUEST_MODULE_DIRS, GUEST_MODULE_FILES, type StagedKernel } from '../kernel/stage-kernel.js';
import { runBinary } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { filesUnder } from '../util/fs.js';
import { guestSourceDir } from '../util/paths.js';
import type { CpioEntry } from './cpio.js';
import { readElfDeps } from './elf.js';
import type { GuestImage } from './image-cache.js';
import { INNER_BOOT_IMAGE, type VariantSpec } from './image-variant.js';
import { moduleInfo, modulesDep, normalizeModuleName } from './kmod.js';

/** Where a binary's shared libraries are looked for in the staged packages, in order. */
const LIB_DIRS = ['/usr/lib/powerpc64le-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/powerpc64le-linux-gnu', '/lib64', '/lib'];

/**
 * The initramfs's entries: merged-/usr skeleton, /init, busybox, the agent, the kernel modules the guest loads (with
 * what they need and a modules.dep), the variant's binaries with every shared library they need, its data dirs, and
 * for a kvm-host the inner guest's base image.
 */
export async function assembleInitramfs(
  staging: string,
  spec: VariantSpec,
  agent: Buffer | undefined,
  kernel: StagedKernel,
  inner?: GuestImage,
): Promise<{ entries: CpioEntry[] }> {
  const entries = new Map<string, CpioEntry>();
  const addDir = (p: string) => {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = `/${parts.slice(0, i).join('/')}`;
      if (!entries.has(d)) entries.set(d, { path: d, type: 'dir' });
    }
  };
  const addFile = (p: string, data: Buffer, mode = 0o644) => {
    addDir(posix.dirname(p));
    entries.set(p, { path: p, type: 'file', data, mode });
  };
  for (const d of [
    '/usr/bin',
    '/usr/sbin',
    '/usr/lib',
    '/usr/lib64',
    '/proc',
    '/sys',
    '/dev',
    '/tmp',
    '/run',
    '/root',
    '/etc',
    '/mnt',
    '/var',
  ])
    addDir(d);
  // Merged /usr, as in Debian trixie: binaries' PT_INTERP is /lib64/ld64.so.2.
  for (const [link, target] of [
    ['/bin', 'usr/bin'],
    ['/sbin', 'usr/sbin'],
    ['/lib', 'usr/lib'],
    ['/lib64', 'usr/lib64'],
  ] as const) {
    entries.set(link, { path: link, type: 'symlink', target });
  }
  // The kernel opens /dev/console for init before devtmpfs is mounted.
  entries.set('/dev/console', { path: '/dev/console', type: 'char', major: 5, minor: 1, mode: 0o600 });
  entries.set('/dev/null', { path: '/dev/null', type: 'char', major: 1, minor: 3, mode: 0o666 });

  addFile('/init', await readFile(join(guestSourceDir, 'init.sh')), 0o755);
  addFile('/usr/bin/busybox', await readFile(join(staging, 'usr/bin/busybox')), 0o755);
  if (agent) addFile('/usr/sbin/tcelab-agent', agent, 0o755);
  addFile('/etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
  addFile('/etc/group', Buffer.from('root:x:0:\n'));

  // Kernel modules with a generated modules.dep.
  const kernelRelease = kernel.release;
  const available: Array<{ relPath: string; name: string; depends: string[]; ko: Buffer }> = [];
  const singles = GUEST_MODULE_FILES.flatMap((f) => [`${f}.ko`, `${f}.ko.xz`]).map((f) => join(kernel.modulesDir, f));
  for (const files of [
    ...(await Promise.all(GUEST_MODULE_DIRS.map((sub) => filesUnder(join(kernel.modulesDir, sub))))),
    singles.filter((f) => existsSync(f)),
  ]) {
    for (const file of files) {
      if (!/\.ko(\.xz)?$/.test(file)) continue;
      const ko = file.endsWith('.xz') ? await runBinary('xz', ['-dc', file], `decompress ${file}`) : await readFile(file);
      available.push({ relPath: file.slice(kernel.modulesDir.length + 1).replace(/\.xz$/, ''), ...moduleInfo(ko), ko });
    }
  }
  // Only what the guest loads, and what that needs: a smaller initramfs boots faster under TCG.
  const byName = new Map(available.map((m) => [normalizeModuleName(m.name), m]));
  const modules: typeof available = [];
  // Built into this kernel, or missing from it (the kernel's facts say so; a scenario that needs it is refused).
  const notAModule = (name: string) =>
    kernel.facts.modules[normalizeModuleName(name)] !== undefined && kernel.facts.modules[normalizeModuleName(name)] !== 'module';
  const want = (name: string) => {
    const m = byName.get(normalizeModuleName(name));
    if (!m && notAModule(name)) return;
    if (!m) throw new TcelabError('guest image', `kernel module ${name} (a dependency) is not in the kernel's module tree`);
    if (modules.includes(m)) return;
    m.depends.forEach(want);
    modules.push(m);
  };
  [...GUEST_MODULES, ...(spec.modules ?? [])].forEach(want);
  // Carried, not loaded at boot, and only where the kernel has it as a module (built in, it needs nothing).
  for (const f of GUEST_MODULE_FILES) if (byName.has(normalizeModuleName(basename(f)))) want(basename(f));
  for (const m of modules) addFile(`/usr/lib/modules/${kernelRelease}/${m.relPath}`, m.ko);
  addFile(`/usr/lib/modules/${kernelRelease}/modules.dep`, Buffer.from(modulesDep(modules)));

  // Binaries, then every shared library they need (transitively), found in the staged packages.
  const wanted = [...spec.binaries];
  const seen = new Set<string>();
  while (wanted.length) {
    const p = wanted.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    const data = await readFile(join(staging, p));
    addFile(p, data, 0o755);
    const deps = readElfDeps(data);
    if (deps.interpreter) {
      const real = await resolveInStaging(staging, deps.interpreter);
      if (!real) throw new TcelabError('guest image', `${p} needs the loader ${deps.interpreter}, which no package provides`);
      wanted.push(real);
      if (real !== normalizeUsr(deps.interpreter))
        entries.set(normalizeUsr(deps.interpreter), { path: normalizeUsr(deps.interpreter), type: 'symlink', target: real });
    }
    for (const soname of deps.needed) {
      let found: string | undefined;
      for (const dir of LIB_DIRS) {
        found = await resolveInStaging(staging, `${dir}/${soname}`);
        if (found) {
          const at = normalizeUsr(`${dir}/${soname}`);
          if (found !== at) {
            addDir(posix.dirname(at));
            entries.set(at, { path: at, type: 'symlink', target: found });
          }
          break;
        }
      }
      if (!found) throw new TcelabError('guest image', `${p} needs ${soname}, which none of the resolved packages provides`);
      wanted.push(found);
    }
  }
  for (const d of spec.dataDirs) {
    for (const file of await filesUnder(join(staging, d))) addFile(file.slice(staging.length), await readFile(file));
  }
  if (inner) {
    addFile(INNER_BOOT_IMAGE.kernel, await readFile(inner.kernel));
    addFile(INNER_BOOT_IMAGE.initrd, await readFile(inner.initrd));
  }
  return { entries: [...entries.values()] };
}

/** The path under merged /usr (the image's layout): /lib/x is /usr/lib/x. */
function normalizeUsr(p: string): string {
  return p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/');
}

/** Follows symlinks inside the staging tree; returns the real path (as seen in the guest) or undefined. */
async function resolveInStaging(staging: string, guestPath: string, depth = 0): Promise<string | undefined> {
  if (depth > 16) return undefined;
  const p = normalizeUsr(guestPath);
  const host = join(staging, p);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(host);
  } catch {
    return undefined;
  }
  if (st.isSymbolicLink()) {
    const target = await readlink(host);
    const next = target.startsWith('/') ? target : posix.normalize(posix.join(posix.dirname(p), target));
    return resolveInStaging(staging, next, depth + 1);
  }
  return st.isFile() ? p : undefined;
}
