import { createServer, type IncomingMessage, type Server } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { livePage } from './page.js';
import { bigintSafe } from '../util/json.js';

/** What the live page receives over its WebSocket, one JSON object per message. */
export type LiveMessage =
  | { type: 'hello'; scenario: string; profile: string }
  | { type: 'sample'; t: number; source: 'host' | 'guest'; pinnedMiB: number; mlockedMiB: number; vmLckMiB?: number }
  | { type: 'phase'; name: string; atMs: number }
  | { type: 'check'; name: string; status: string; measured: string; expected: string }
  | { type: 'event'; event: string; data: unknown; atMs: number }
  | { type: 'done'; passed: boolean };

/**
 * The live view of a run: a page on 127.0.0.1 only, behind a random token in
 * its URL, plotting pinned-page counters and listing QMP events and verdicts
 * as they happen, fed over a WebSocket. A wrong or missing token gets 403.
 */
export class LiveServer {
  private readonly token = randomBytes(16).toString('hex');
  private readonly history: LiveMessage[] = [];
  private readonly clients = new Set<WebSocket>();
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  url = '';

  private tokenOk(req: IncomingMessage): boolean {
    const got = new URL(req.url ?? '/', 'http://127.0.0.1').searchParams.get('token') ?? '';
    const a = Buffer.from(got);
    const b = Buffer.from(this.token);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async start(port = 0): Promise<string> {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
    this.server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      if (!this.tokenOk(req)) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden: wrong or missing token\n');
        return;
      }
      if (req.method !== 'GET' || path !== '/') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy':
          "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src ws://127.0.0.1:*",
      });
      res.end(livePage());
    });
    this.server.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname !== '/ws' || !this.tokenOk(req)) {
        socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
        return;
      }
      this.wss!.handleUpgrade(req, socket, head, (ws) => {
        this.clients.add(ws);
        ws.on('close', () => this.clients.delete(ws));
        ws.on('error', () => this.clients.delete(ws));
        // A page opened mid-run first gets everything so far.
        for (const m of this.history) ws.send(JSON.stringify(m, bigintSafe));
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}/?token=${this.token}`;
    return this.url;
  }

  publish(m: LiveMessage): void {
    this.history.push(m);
    if (this.history.length > 50_000) this.history.splice(0, 10_000);
    const text = JSON.stringify(m, bigintSafe);
    for (const c of this.clients) if (c.readyState === c.OPEN) c.send(text);
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    this.wss?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
