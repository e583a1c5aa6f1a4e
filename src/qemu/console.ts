import { createWriteStream, type WriteStream } from 'node:fs';
import { EventEmitter } from 'node:events';
import { TcelabError } from '../util/errors.js';

/** The line a panicking Linux kernel prints first. */
export const PANIC_PATTERN = /Kernel panic - not syncing[^\n]*/;

export class GuestPanicError extends TcelabError {
  constructor(readonly line: string) {
    super('guest kernel', `panicked: ${line}`, 'see console.log in the run artifacts for the backtrace');
    this.name = 'GuestPanicError';
  }
}

/**
 * The guest console (hvc0, QEMU's stdout): written to console.log as it
 * arrives, scanned for patterns. A wait fails at once on a kernel panic or
 * when QEMU exits, instead of running into its timeout.
 */
export class GuestConsole extends EventEmitter {
  private text = '';
  /** Bytes dropped from the front of `text` to bound memory. */
  private dropped = 0;
  private readonly file: WriteStream;
  private endedReason: string | undefined;
  panicLine: string | undefined;
  /** QEMU stopped the machine for good (internal-error: an unknown KVM exit…): waits fail at once, like a panic. */
  haltedReason: string | undefined;

  constructor(
    path: string,
    private readonly maxBuffered = 4 * 1024 * 1024,
  ) {
    super();
    this.file = createWriteStream(path, { flags: 'a', mode: 0o600 });
    this.file.on('error', () => {});
  }

  append(chunk: Buffer): void {
    this.file.write(chunk);
    this.text += chunk.toString('utf8');
    if (this.text.length > this.maxBuffered) {
      const cut = this.text.length - this.maxBuffered / 2;
      this.text = this.text.slice(cut);
      this.dropped += cut;
    }
    // A panic ends every wait at once. (An Oops or BUG does not stop the guest:
    // the runner reports those in its own verdict.)
    if (!this.panicLine) {
      const m = PANIC_PATTERN.exec(this.text);
      if (m) {
        this.panicLine = m[0];
        this.emit('panic', m[0]);
      }
    }
    this.emit('data');
  }

  /** The machine will run no more though QEMU lives (its run state is internal-error): pending waits fail. */
  halt(reason: string): void {
    this.haltedReason ??= reason;
    this.emit('data');
  }

  /** Marks the end of output (QEMU exited): pending waits fail. */
  end(reason: string): void {
    this.endedReason = reason;
    this.emit('ended', reason);
    this.file.end();
  }

  /** Offset to pass to waitFor so that only later output counts. */
  mark(): number {
    return this.dropped + this.text.length;
  }

  /** The output since a mark() (what is still buffered of it). */
  textSince(mark: number): string {
    return this.text.slice(Math.max(0, mark - this.dropped));
  }

  tail(lines = 20): string {
    return this.text.split('\n').slice(-lines).join('\n');
  }

  waitFor(pattern: RegExp, opts: { timeoutMs: number; since?: number; what: string }): Promise<RegExpExecArray> {
    const search = (): RegExpExecArray | null => {
      const from = Math.max(0, (opts.since ?? 0) - this.dropped);
      const m = pattern.exec(this.text.slice(from));
      return m;
    };
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = search();
        if (m) {
          cleanup();
          resolve(m);
        } else if (this.panicLine) {
          cleanup();
          reject(new GuestPanicError(this.panicLine));
        } else if (this.haltedReason) {
          cleanup();
          reject(
            new TcelabError(
              `waiting for ${opts.what}`,
              `QEMU stopped the machine: ${this.haltedReason}`,
              'see qemu-stderr.log in the run artifacts',
            ),
          );
        } else if (this.endedReason) {
          cleanup();
          reject(
            new TcelabError(
              `waiting for ${opts.what}`,
              `QEMU exited first (${this.endedReason})`,
              'see console.log and qemu-stderr.log in the run artifacts',
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new TcelabError(
            `waiting for ${opts.what}`,
            `not seen on the console within ${opts.timeoutMs / 1000} s`,
            `last console lines:\n${this.tail(8).replace(/^/gm, '      ')}`,
          ),
        );
      }, opts.timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('data', check);
        this.off('ended', check);
        this.off('panic', check);
      };
      this.on('data', check);
      this.on('ended', check);
      this.on('panic', check);
      check();
    });
  }

  async close(): Promise<void> {
    if (!this.file.closed) await new Promise<void>((r) => this.file.end(r));
  }
}
