import { writeFile } from 'node:fs/promises';
import { toKcidb } from '../report/kcidb.js';
import { toKtap } from '../report/ktap.js';
import type { ScenarioReport } from '../scenario/scenario.js';
import { InputError } from '../util/errors.js';

/** What other systems read: a KCIDB document (--kcidb FILE) and KTAP (--ktap FILE, or --ktap alone for stdout). */
export interface ExchangeOutputs {
  kcidb?: string;
  /** '' : KTAP on stdout instead of the human summary. */
  ktap?: string;
}

/** Refuses a bad value before anything starts. */
export function checkExchangeOutputs(o: ExchangeOutputs): void {
  if (o.kcidb !== undefined && !o.kcidb) throw new InputError('--kcidb', '(empty)', 'needs a file name, e.g. --kcidb kcidb.json');
}

/** True when KTAP took stdout (the caller then prints no summary there). */
export async function writeExchangeOutputs(reports: ScenarioReport[], o: ExchangeOutputs): Promise<boolean> {
  if (o.kcidb) await writeFile(o.kcidb, `${JSON.stringify(toKcidb(reports), null, 2)}\n`);
  if (o.ktap === undefined) return false;
  if (o.ktap) {
    await writeFile(o.ktap, toKtap(reports));
    return false;
  }
  process.stdout.write(toKtap(reports));
  return true;
}
