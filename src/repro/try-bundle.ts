import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeCpio, type CpioEntry } from '../image/cpio.js';
import { ensureGuestImage } from '../image/ensure-guest-image.js';
import { Lab } from '../lab/lab.js';
import { modulesAfterSave } from '../qemu/modules-after-save.js';
import { guestPciDomain, type Profile } from '../qemu/profile.js';
import { InputError, TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';

/** Where the bundle lands in the guest, as if the user had copied it there. */
export const GUEST_BUNDLE_DIR = '/root/repro';
const BUNDLE_FILES = ['run.sh', 'steps.jsonl', 'tcelab-agent'];

export interface TryRequest {
  bundleDir: string;
  profile: Profile;
  progress: Progress;
  runtimeRoot?: string;
  /** The lab's console log and records go here (always kept: they are the evidence). */
  artifactsTo?: string;
  timeoutMs?: number;
}

export interface TryOutcome {
  /** run.sh's exit code: 0 passed, 1 reproduced, 2 could not run. */
  exitCode: number;
  /** What run.sh printed (KTAP and its own lines). */
  output: string;
  kernelRelease: string;
  device: string;
}

/**
 * The initramfs with the bundle added: the image's (gzip'd) archive, zero
 * padding to a 4-byte boundary, then a plain newc archive of the bundle. The
 * kernel unpacks concatenated archives in order; the image is not touched.
 */
async function initrdWithBundle(baseInitrd: string, bundleDir: string, out: string): Promise<void> {
  const base = await readFile(baseInitrd);
  const entries: CpioEntry[] = [
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: GUEST_BUNDLE_DIR.slice(1), type: 'dir', mode: 0o755 },
  ];
  // The whole bundle, its folders (patches/<base>/) included, as a person would copy it.
  const add = async (dir: string, at: string): Promise<void> => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = `${at}/${e.name}`;
      if (e.isDirectory()) {
        entries.push({ path, type: 'dir', mode: 0o755 });
        await add(join(dir, e.name), path);
      } else entries.push({ path, type: 'file', data: await readFile(join(dir, e.name)), mode: 0o755 });
    }
  };
  await add(bundleDir, GUEST_BUNDLE_DIR.slice(1));
  await writeFile(out, Buffer.concat([base, Buffer.alloc((4 - (base.length % 4)) % 4), writeCpio(entries)]));
}

/**
 * `tcelab repro try BUNDLE`: a fresh guest of the profile, booted without the
 * agent (tcelab.agent=off: a shell on the console instead), the bundle copied
 * in, and run.sh typed on the console as a person would, with the address of
 * the profile's device found the way a person would (ls). Nothing of tcelab
 * runs in the guest but what the bundle brought.
 */
export async function tryBundle(req: TryRequest): Promise<TryOutcome> {
  for (const f of BUNDLE_FILES)
    if (!existsSync(join(req.bundleDir, f)))
      throw new InputError('repro try', 'BUNDLE', `${req.bundleDir} has no ${f}`, 'name a dir written by `tcelab repro export`');
  const device = req.profile.devices[0];
  if (!device) throw new InputError('repro try', '--profile', `profile ${req.profile.name} has no device to give the bundle`);
  if (!req.profile.guest.boot) throw new InputError('repro try', '--profile', `profile ${req.profile.name} boots no guest`);
  const domain = guestPciDomain(req.profile.phbs.find((p) => p.id === device.phb)!);
  const image = await ensureGuestImage(req.profile, req.progress);
  const work = await mkdtemp('/tmp/tcelab-try-');
  try {
    const initrd = join(work, 'initrd-with-bundle.cpio');
    await req.progress.step(`copy the bundle into a fresh guest's initramfs (${GUEST_BUNDLE_DIR})`, () =>
      initrdWithBundle(image.initrd, req.bundleDir, initrd),
    );
    // No agent: the machine is never saved, and nothing would load the modules the lab loads after a save (kvm_hv): /init does.
    const late = modulesAfterSave(req.profile);
    const append = `${req.profile.guest.append} tcelab.agent=off${late.length ? ` tcelab.modules=${late.join(',')}` : ''}`;
    const profile: Profile = { ...req.profile, guest: { ...req.profile.guest, append } };
    const lab = await Lab.launch(profile, {
      image: { kernel: image.kernel, initrd },
      progress: req.progress,
      runtimeRoot: req.runtimeRoot,
    });
    try {
      const init = await lab.waitForGuestInit(req.progress);
      const mark = lab.process.console.mark();
      const find = `$(cd /sys/bus/pci/devices && ls -d ${domain}:* | head -n 1)`;
      lab.process.typeOnConsole(`cd ${GUEST_BUNDLE_DIR} && echo TCELAB-REPRO-BEGIN && sh run.sh "${find}"; echo TCELAB-REPRO-EXIT=$?\n`);
      const timeoutMs = req.timeoutMs ?? 180_000;
      const done = await req.progress.step(`run.sh in the guest (${init.kernelRelease})`, () =>
        lab.process.console.waitFor(/^TCELAB-REPRO-EXIT=(\d+)\r?$/m, { since: mark, timeoutMs, what: 'run.sh to finish' }),
      );
      const text = lab.process.console.textSince(mark).replace(/\r/g, '');
      const begin = text.search(/^TCELAB-REPRO-BEGIN$/m);
      const end = text.search(/^TCELAB-REPRO-EXIT=\d+$/m);
      if (begin < 0) throw new TcelabError('repro try', 'the guest shell never started run.sh', 'see console.log in the kept runtime dir');
      const output = text.slice(text.indexOf('\n', begin) + 1, end);
      const addr = /^run\.sh: device (\S+)/m.exec(output)?.[1] ?? `${domain}:* (not found)`;
      return { exitCode: Number(done[1]), output, kernelRelease: init.kernelRelease, device: addr };
    } catch (err) {
      lab.failed = true;
      throw err;
    } finally {
      // The console is the evidence either way: artifactsTo gets it.
      await lab.close({ artifactsTo: req.artifactsTo, progress: req.progress });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
