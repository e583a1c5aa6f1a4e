import { existsSync } from 'node:fs';
import { listProfiles, resolveProfilePath } from '../qemu/profile.js';
import { InputError } from '../util/errors.js';

/** Whether a profile name or path names a profile that exists. */
export const profileExists = (nameOrPath: string): boolean => existsSync(resolveProfilePath(nameOrPath));

/** A --profile that names no profile is bad input (exit 2) before anything starts, listing the profiles there are. */
export async function requireProfileInput(command: string, nameOrPath: string): Promise<void> {
  if (!profileExists(nameOrPath))
    throw new InputError(command, '--profile', `no such profile: ${nameOrPath}`, `profiles: ${(await listProfiles()).join(', ')}`);
}
