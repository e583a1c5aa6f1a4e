import { readdirSync, readFileSync } from 'node:fs';

/** PIDs of QEMU processes started by tcelab (their -name starts with tcelab-), optionally under one runtime root. */
export function liveLabQemuPids(runtimeRoot?: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const args = cmdline.split('\0');
    if (!args.some((a) => a.endsWith('qemu-system-ppc64'))) continue;
    if (!args.some((a) => a.startsWith('tcelab-'))) continue;
    if (runtimeRoot && !args.some((a) => a.includes(runtimeRoot))) continue;
    out.push(Number(entry));
  }
  return out;
}
