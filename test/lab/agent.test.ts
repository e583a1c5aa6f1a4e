import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../src/agent/agent-client.js';
import { AgentCommandError } from '../../src/agent/errors.js';
import { AgentHost } from '../../src/host/agent-host.js';
import { useBootedLab } from '../helpers/booted-lab.js';
import { rng, mutate } from '../helpers/fuzz.js';

async function errorClass(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AgentCommandError);
  return (e as AgentCommandError).errorClass;
}

// The real agent in the real guest: every bad request gets an error reply and the agent keeps serving.
describe('guest agent', () => {
  const booted = useBootedLab();
  let agent: AgentClient;
  beforeAll(() => {
    agent = booted.agent;
  });

  it('reports the kernel, page size, VFIO extensions and IOMMU groups', async () => {
    const info = await agent.info();
    expect(info.kernelRelease).toMatch(/^6\.12\./);
    expect(info.pageSize).toBe(4096);
    expect(info.vfio).toMatchObject({ spaprTceV1: true, spaprTceV2: true });
    const edu = info.iommuGroups.flatMap((g) => g.devices).find((d) => d.vendor === '0x1234' && d.device === '0x11e8');
    expect(edu?.address).toBe('0001:00:00.0');
  });

  it('answers bad requests with errors and keeps serving', async () => {
    expect(await errorClass(agent.execute('no-such-command'))).toBe('CommandNotFound');
    expect(await errorClass(agent.execute('bind', { device: 'not-a-bdf' }))).toBe('InvalidParameter');
    expect(await errorClass(agent.execute('bind', {}))).toBe('InvalidParameter');
    expect(await errorClass(agent.execute('exec', { argv: 'ls' }))).toBe('InvalidParameter');
    expect(await errorClass(agent.execute('read-file', { path: '/no/such/file' }))).toBe('ENOENT');
    expect(await errorClass(agent.execute('worker', { worker: 999, op: 'status' }))).toBe('ENOENT');
    agent.connection.sendRaw('{"execute": "ping", ');
    agent.connection.sendRaw('[1,2,3]');
    agent.connection.sendRaw(`{"execute":"ping","arguments":{"x":"${'a'.repeat(1100 * 1024)}"}}`);
    await agent.resync(10_000);
    expect((await agent.ping()).pong).toBe(true);
  });

  it('survives 300 fuzzed request lines (seed 42) and keeps serving', async () => {
    const r = rng(42);
    const bases = [
      '{"execute":"ping","id":"f1"}',
      '{"execute":"counters","arguments":{"pid":1},"id":"f2"}',
      '{"execute":"read-file","arguments":{"path":"/proc/vmstat","maxBytes":64},"id":"f3"}',
      // The stream commands, on streams that do not exist (a fuzzed spawn could start anything).
      '{"execute":"stream-read","arguments":{"stream":77,"waitMs":5},"id":"f4"}',
      '{"execute":"stream-write","arguments":{"stream":77,"data":"QUJD"},"id":"f5"}',
      '{"execute":"relay-open","arguments":{"path":"/tmp/none.sock"},"id":"f6"}',
    ];
    for (let i = 0; i < 300; i++) {
      agent.connection.sendRaw(Buffer.concat([mutate(bases[i % bases.length]!, r), Buffer.from('\n')]));
      if (i % 50 === 0) await new Promise((res) => setTimeout(res, 20));
    }
    await agent.resync(20_000);
    expect((await agent.ping()).pong).toBe(true);
    expect((await agent.info()).kernelRelease).toMatch(/^6\.12\./);
  });

  it('runs helper programs with exit status and output', async () => {
    const r = await agent.exec(['uname', '-r']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim()).toMatch(/^6\.12\./);
    const bad = await agent.exec(['/no/such/program']);
    expect(bad.exitCode).toBe(127);
    const slow = await agent.exec(['sleep', '10'], 300);
    expect(slow.timedOut).toBe(true);
  });

  it('spawns long-running programs on the AgentHost: output streamed, exit status and signal reported', async () => {
    const host = new AgentHost(agent);
    const p = await host.spawn(['sh', '-c', 'echo out; echo err >&2; sleep 0.3; printf "\\377\\000binary"; exit 3']);
    const collect = (r: NodeJS.ReadableStream) =>
      new Promise<Buffer>((res) => {
        const parts: Buffer[] = [];
        r.on('data', (d: Buffer) => parts.push(d));
        r.on('end', () => res(Buffer.concat(parts)));
      });
    const [out, err, exit] = await Promise.all([collect(p.stdout), collect(p.stderr), p.exited]);
    expect(exit).toMatchObject({ code: 3, signal: null });
    expect(out).toEqual(Buffer.concat([Buffer.from('out\n'), Buffer.from([0xff, 0]), Buffer.from('binary')]));
    expect(err.toString()).toBe('err\n');

    const sleeper = await host.spawn(['sleep', '60']);
    sleeper.kill('SIGTERM');
    expect(await sleeper.exited).toMatchObject({ code: null, signal: 'SIGTERM' });
    const missing = await host.spawn(['no-such-program']);
    expect((await missing.exited).code).toBe(127);

    expect(await errorClass(agent.execute('spawn', { argv: [] }))).toBe('InvalidParameter');
    expect(await errorClass(agent.execute('stream-read', { stream: 9999 }))).toBe('ENOENT');
    expect(await errorClass(agent.execute('relay-open', { path: '/no/such.sock' }))).toBe('ENOENT');
    expect(await errorClass(agent.execute('relay-open', { path: `/tmp/${'x'.repeat(200)}` }))).toBe('InvalidParameter');
    const s = await agent.spawn(['sleep', '60']);
    expect(await errorClass(agent.execute('stream-write', { stream: s.stream, data: 'AAAA' }))).toBe('EBADF');
    expect(await errorClass(agent.execute('stream-close', { stream: s.stream }))).toBe('EBUSY');
    await agent.kill(s.pid, 'KILL');
    for (let done = false; !done; ) done = (await agent.streamRead(s.stream, 1000)).done;
    await agent.streamClose(s.stream);
    await expect(host.connectUnix('/no/such.sock')).rejects.toThrow(/ENOENT|No such file/);
    expect((await agent.ping()).pong).toBe(true);
  });

  it('relays a unix socket in the guest byte for byte, large and binary payloads included, and ends when the peer closes', async () => {
    const host = new AgentHost(agent);
    const server = await host.spawn(['/usr/sbin/tcelab-agent', 'echo-server', '/tmp/echo.sock']);
    try {
      let sock: import('node:stream').Duplex | undefined;
      for (let i = 0; i < 50 && !sock; i++)
        sock = await host.connectUnix('/tmp/echo.sock').catch(async () => {
          await new Promise((r) => setTimeout(r, 100));
          return undefined;
        });
      // 3 MiB of every byte value: many replies (192 KiB each) and more than the agent queues either way (1 MiB).
      const payload = Buffer.alloc(3 * 1024 * 1024, 0).map((_, i) => (i * 7) % 256);
      const got: Buffer[] = [];
      let n = 0;
      const all = new Promise<void>((res) =>
        sock!.on('data', (d: Buffer) => {
          got.push(d);
          n += d.length;
          if (n >= payload.length) res();
        }),
      );
      sock!.write(payload);
      await all;
      expect(Buffer.concat(got).equals(payload)).toBe(true);
      const closed = new Promise<void>((res) => sock!.on('close', () => res()));
      // The peer goes away: the relay ends and closes, and the agent frees the stream.
      server.kill('SIGKILL');
      await closed;
      expect((await server.exited).signal).toBe('SIGKILL');
    } finally {
      server.kill('SIGKILL');
    }
    expect((await agent.ping()).pong).toBe(true);
  });

  it('keeps serving while a program runs (exec is asynchronous)', async () => {
    const t0 = Date.now();
    const running = agent.exec(['sleep', '2']);
    await agent.ping();
    const c = await agent.counters();
    const answeredAfter = Date.now() - t0;
    expect(c.nrFollPinAcquired).toBeGreaterThanOrEqual(0);
    expect(answeredAfter).toBeLessThan(1500);
    const r = await running;
    expect(r.exitCode).toBe(0);
    expect(r.durationMs).toBeGreaterThanOrEqual(2000);
  });

  it('starts, queries and kills VFIO workers while the agent stays up', async () => {
    const bound = await agent.bind('0001:00:00.0');
    const w = await agent.startWorker();
    const opened = await w.open(bound.group);
    expect(opened.info.ddw.maxDynamicWindows).toBeGreaterThanOrEqual(1);
    expect(await errorClass(w.open(bound.group))).toBe('EEXIST');
    const holders = await agent.pinHolders();
    expect(holders.find((h) => h.pid === w.pid)?.fds.map((f) => `${f.kind} ${f.target}`)).toEqual(
      expect.arrayContaining(['container /dev/vfio/vfio', `group /dev/vfio/${bound.group}`]),
    );
    const stopped = await w.stop('KILL');
    expect(stopped).toMatchObject({ alive: false, signal: 9 });
    expect(await errorClass(w.status())).toBe('ESRCH');
    expect((await agent.workers()).find((x) => x.worker === w.id)?.alive).toBe(false);
    expect((await agent.ping()).pong).toBe(true);
    await agent.unbind('0001:00:00.0');
  });

  // The barrier the release waits end on (scenario/guest-pins.ts): a registration's pins are put by an RCU callback
  // after UNREGISTER returns; read after the barrier, every one of them has landed, every time.
  it('counters read after its RCU barrier see each unregistered region released', async () => {
    const { group } = await agent.bind('0001:00:00.0');
    const w = await agent.startWorker();
    await w.open(group);
    const pinned = (c: { nrFollPinAcquired: number; nrFollPinReleased: number }) => c.nrFollPinAcquired - c.nrFollPinReleased;
    const before = pinned(await agent.counters());
    for (let i = 0; i < 10; i++) {
      const r = await w.alloc(4 * 1024 * 1024);
      await w.register(r.region);
      await w.unregister(r.region);
      const after = await agent.counters(undefined, { rcuBarrier: true });
      expect(after.rcuBarrier).toMatchObject({ us: expect.any(Number) });
      expect(pinned(after)).toBe(before);
      await w.free(r.region);
    }
    await w.stop('TERM');
    await agent.unbind('0001:00:00.0');
  });
});
