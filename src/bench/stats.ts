export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

export function fmt(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

/**
 * CPU time of the waited-for children of a process (their user + system), in ms, from its /proc/<pid>/stat: the
 * fields cutime and cstime (the 16th and 17th; counted after the command's name, which may hold spaces), in clock
 * ticks of 1/100 s.
 */
export function childrenCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is the state, the 3rd field of the line: cutime (16th) is fields[13], cstime fields[14].
  return (Number(fields[13]) + Number(fields[14])) * 10;
}
