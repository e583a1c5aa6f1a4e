import type { Duplex, Readable, Writable } from 'node:stream';

export interface DirEntry {
  name: string;
  type: 'dir' | 'file' | 'link' | 'char';
  target?: string;
}

/** How a process on a Host ended. `at` is when the controller learned it (ms since the epoch). */
export interface HostExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A long-running process on a Host (a QEMU): its output as streams, its end as a promise. */
export interface HostProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** The program's standard input, where the host gives one (this machine does; a guest's agent does not). */
  readonly stdin?: Writable;
  readonly exited: Promise<HostExit>;
  /** Sends a signal; a process that already exited is not an error. */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  cwd?: string;
  /** Added to the environment the program inherits (a guest's agent ignores it). */
  env?: Record<string, string>;
  /** A cgroup's `cgroup.procs`: the program starts in that cgroup (this machine only; a guest's agent ignores it). */
  cgroupProcs?: string;
}

/**
 * A machine whose /proc and /sys tcelab reads and writes: this one, or a
 * guest reached through its agent. Probes, doctor and the vfio-pci binder are
 * written once against Host and run unchanged on either.
 */
export interface Host {
  readonly name: string;
  /** This machine (the controller's own processes, files and sockets) or one reached through an agent. */
  readonly local: boolean;
  /** The host went away (a guest that shut down): nothing on it is left to clean up. */
  readonly gone: boolean;
  /**
   * Starts a program that dies with whatever started it (the controller here,
   * the agent in a guest), so a lost controller never leaves a lab behind.
   */
  spawn(argv: string[], opts?: SpawnOptions): Promise<HostProcess>;
  /** A byte stream to a unix socket on this host; rejects while nothing listens there. */
  connectUnix(path: string): Promise<Duplex>;
  /** A new directory only its owner can enter, for sockets and pid files. */
  makePrivateDir(prefix: string): Promise<string>;
  removeDir(path: string): Promise<void>;
  /** File contents, or undefined if the file does not exist (e.g. a process that exited). */
  readFile(path: string): Promise<string | undefined>;
  writeFile(path: string, content: string): Promise<void>;
  /** Entries, or undefined if the directory does not exist. */
  listDir(path: string): Promise<DirEntry[] | undefined>;
  /** A symlink's target, or undefined if it is not there. */
  readLink(path: string): Promise<string | undefined>;
  exec(argv: string[], timeoutMs?: number): Promise<{ exitCode: number; stdout: string; stderr: string }>;
}

/** A file, directory or process that is not there (any more): callers treat it as absent, not as an error. */
export const missingErrnoCodes = ['ENOENT', 'ESRCH', 'ENOTDIR'];
