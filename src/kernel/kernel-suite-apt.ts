import { rm } from 'node:fs/promises';
import { hostDebianMirror } from '../debian/apt-sources.js';
import { MIRROR_HINT, suiteAptRoot, USERLAND_ARCH, USERLAND_SUITE } from '../debian/guest-suite.js';
import { mirrorSuites } from '../debian/mirror-suites.js';
import { isMissingReleaseError, PrivateApt } from '../debian/private-apt.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import type { KernelInput } from './kernel-spec.js';
import { missingSuiteError, suiteWithoutArchError } from './unresolvable-kernel.js';

/** The private apt of a Debian suite in the cache, its package lists updated from the host's mirror. */
export async function updatedSuiteApt(cache: string, suite: string, progress: Progress, mirror = hostDebianMirror()): Promise<PrivateApt> {
  const apt = new PrivateApt(suiteAptRoot(cache, suite), mirror, suite, USERLAND_ARCH);
  await progress.step(`update Debian ${suite} ${USERLAND_ARCH} package lists (private apt config)`, () => apt.update());
  // apt-get update that cannot reach the mirror warns and succeeds, with no index: that is the mirror's failure.
  if ((await apt.releaseField(apt.dist, 'Architectures')) === undefined) {
    throw new TcelabError(
      `apt-get update for Debian ${suite} ${USERLAND_ARCH}`,
      `it fetched no index of ${suite} from ${mirror}`,
      MIRROR_HINT,
    );
  }
  if (apt.dist !== suite) {
    progress.info(
      `the mirror's ${suite} index is mid-sync; using its ${apt.dist} alias (same release, signed, from ${await apt.releaseField(apt.dist, 'Date')})`,
    );
  }
  return apt;
}

/**
 * The private apt of the kernel's suite, updated. A suite the mirror answers it does not have, or has not for the
 * guest's architecture, is bad input that says which suites the mirror has (its apt dir is not kept); a mirror that
 * cannot be reached stays the mirror's failure.
 */
export async function kernelSuiteApt(
  cache: string,
  suite: string,
  input: KernelInput,
  progress: Progress,
  update: (suite: string) => Promise<PrivateApt> = (s) => updatedSuiteApt(cache, s, progress),
): Promise<PrivateApt> {
  const mirror = hostDebianMirror();
  const where = async () => ({ mirror, arch: USERLAND_ARCH, has: await mirrorSuites(mirror, USERLAND_ARCH) });
  let apt: PrivateApt;
  try {
    apt = await update(suite);
  } catch (err) {
    if (!isMissingReleaseError(err)) throw err;
    if (suite !== USERLAND_SUITE) await rm(suiteAptRoot(cache, suite), { recursive: true, force: true });
    throw missingSuiteError(suite, input, await where(), err);
  }
  const architectures = (await apt.releaseField(apt.dist, 'Architectures')) ?? '';
  if (!architectures.split(/\s+/).includes(USERLAND_ARCH)) throw suiteWithoutArchError(suite, input, { ...(await where()), architectures });
  return apt;
}
