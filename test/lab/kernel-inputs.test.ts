import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { requireGuestImage } from '../../src/image/image-builder.js';
import { imageDir } from '../../src/image/image-cache.js';
import { cacheDir, packageRoot } from '../../src/util/paths.js';
import { testRuntimeRoot } from '../helpers/lab.js';
import { liveLabQemuPids } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = join(packageRoot, 'dist/cli/main.js');

/**
 * A kernel as a kernel developer has it after `make` and `make modules_install INSTALL_MOD_PATH=…`: here made from
 * trixie's own package (the one the default image boots), laid out as a local build.
 */
let unpackedPackage: string | undefined;

/** The package's files a local build's tree needs, unpacked once for the file (each build copies them). */
async function unpackKernelPackage(): Promise<string> {
  if (unpackedPackage) return unpackedPackage;
  const image = await requireGuestImage('base');
  const pkg = image.manifest.packages.find((p) => /^linux-image-6\.12\./.test(p.name))!;
  const deb = join(cacheDir(), 'guest', 'debs', `${pkg.name}_${pkg.version}_${pkg.architecture}.deb`);
  const unpacked = scratchDir('kpkg');
  execFileSync('bash', [
    '-o',
    'pipefail',
    '-c',
    'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards ' +
      "'./boot/*' './usr/lib/modules/*/kernel/drivers/vfio/*' './usr/lib/modules/*/kernel/drivers/pci/hotplug/*' " +
      "'./usr/lib/modules/*/kernel/drivers/net/tun.ko*'",
    'x',
    deb,
    unpacked,
  ]);
  unpackedPackage = unpacked;
  return unpacked;
}

async function localBuild(opts: { withoutHotplug: boolean }): Promise<string> {
  const dir = scratchDir('kbuild');
  const unpacked = join(dir, 'pkg');
  execFileSync('cp', ['-a', await unpackKernelPackage(), unpacked]);
  const release = readdirSync(join(unpacked, 'usr/lib/modules'))[0]!;
  const build = join(dir, 'linux');
  mkdirSync(build);
  copyFileSync(join(unpacked, 'boot', `vmlinux-${release}`), join(build, 'vmlinux'));
  let config = readFileSync(join(unpacked, 'boot', `config-${release}`), 'utf8');
  mkdirSync(join(dir, 'mods', 'lib', 'modules'), { recursive: true });
  renameSync(join(unpacked, 'usr/lib/modules', release), join(dir, 'mods', 'lib', 'modules', release));
  if (opts.withoutHotplug) {
    // A build configured without RPA hotplug.
    config = config.replace(/^CONFIG_HOTPLUG_PCI_RPA(_DLPAR)?=.*$/gm, '# CONFIG_HOTPLUG_PCI_RPA$1 is not set');
    rmSync(join(dir, 'mods', 'lib', 'modules', release, 'kernel/drivers/pci/hotplug'), { recursive: true });
  }
  writeFileSync(join(build, '.config'), config);
  return `local:${join(build, 'vmlinux')},${join(dir, 'mods')}`;
}

describe('the kernel under test is an input', () => {
  // Each local build here has paths of its own, hence an image of its own: they go with the test.
  const built: string[] = [];
  afterAll(() => {
    for (const k of built) rmSync(imageDir('base', k), { recursive: true, force: true });
    if (unpackedPackage) rmSync(unpackedPackage, { recursive: true, force: true });
  });
  it('a local build without RPA hotplug: ddw-hotplug is refused before QEMU starts, naming what is missing', async () => {
    const kernel = await localBuild({ withoutHotplug: true });
    built.push(kernel);
    const root = testRuntimeRoot();
    const r = spawnSync(process.execPath, [cli, 'run', 'ddw-hotplug', '--kernel', kernel, '--results', scratchDir('res')], {
      env: { ...process.env, TCELAB_RUNTIME_DIR: root },
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(r.status, r.stderr.slice(-2000)).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        'kernel local:\\S+: 6\\.12\\.\\S+: lacks what ddw-hotplug needs: ' +
          'CONFIG_HOTPLUG_PCI_RPA \\(not set\\), CONFIG_HOTPLUG_PCI_RPA_DLPAR \\(not set\\), module rpadlpar_io',
      ),
    );
    expect(readdirSync(root)).toEqual([]);
    // Refused from the build's own files, before an image was built for it.
    expect(existsSync(imageDir('base', kernel))).toBe(false);
    // Among scenarios it can run, it is no bad input: the suite runs those and reports ddw-hotplug as not started.
    const all = spawnSync(process.execPath, [cli, 'run', '--all', '--kernel', kernel, '--dry-run'], { encoding: 'utf8', timeout: 60_000 });
    expect(all.status, all.stderr).toBe(0);
    expect(all.stdout.split('\n')).toEqual(expect.arrayContaining(['ddw-hotplug', 'prereg-accounting']));
  });

  it('a complete local build boots and prereg-accounting passes on it; the report says what ran', async () => {
    const kernel = await localBuild({ withoutHotplug: false });
    built.push(kernel);
    const root = testRuntimeRoot();
    const results = scratchDir('res');
    const r = spawnSync(process.execPath, [cli, 'run', 'prereg-accounting', '--kernel', kernel, '--results', results], {
      env: { ...process.env, TCELAB_RUNTIME_DIR: root },
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    // Its image took the userland the default kernel's image recorded (built by \`npm test\` first), and the agent built once.
    expect(r.stderr).toMatch(/userland: the packages the debian:trixie image of base recorded/);
    expect(r.stderr).not.toMatch(/resolve package versions/);
    const report = JSON.parse(readFileSync(join(results, 'results.json'), 'utf8'));
    expect(report.kernel).toMatchObject({
      release: expect.stringMatching(/^6\.12\./),
      pageSize: 4096,
      source: { spec: kernel, layout: 'local' },
      config: { VFIO_IOMMU_SPAPR_TCE: 'm', HOTPLUG_PCI_RPA: 'm', PPC_64K_PAGES: 'not set' },
      modules: { vfio: 'module', vfio_iommu_spapr_tce: 'module', vfio_pci: 'module', rpadlpar_io: 'module' },
    });
    expect(report.guestKernel).toBe(report.kernel.release);
    expect(liveLabQemuPids(root)).toEqual([]);
  });
});
