// The world the browser tests run in: a destination that the test tells
// which events to refuse, and a `hookstream dev` (embedded broker, private
// PostgreSQL, receiver, consumer, admin API and console) delivering to it.
// Shared by each browser's test file (console.test.mjs for Chromium,
// firefox.test.mjs for Firefox); each file starts its own world.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const token = 'e2e-admin-token-' + crypto.randomBytes(12).toString('hex');
export const run = Date.now().toString(36); // ids unique to this run
const secret = 'e2e-generic-secret-' + crypto.randomBytes(12).toString('hex');

// Destination: 400 (a permanent failure: the event goes DEAD and parks its
// customer) for the event ids in refuse, 200 otherwise; it records what it
// accepted, in order.
export class Destination {
  constructor() {
    this.refuse = new Set();
    this.delivered = [];
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        let id = '';
        try { id = JSON.parse(body).event_id; } catch { /* not ours */ }
        if (this.refuse.has(id)) {
          res.writeHead(400).end('refused by the test destination');
          return;
        }
        this.delivered.push(id);
        res.writeHead(200).end('ok');
      });
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${this.server.address().port}/hooks`;
  }

  stop() { this.server.close(); }
}

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// Dev is a running `hookstream dev`, with the console on its admin
// listener (--admin-addr), as an operator would keep it off the internet.
export class Dev {
  async start(binary, destinationURL) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hookstream-console-e2e-'));
    const sources = path.join(this.dir, 'sources.yaml');
    fs.writeFileSync(sources, `sources:
  - name: generic
    scheme: hmac-sha256
    secrets: ["env:HOOKSTREAM_GENERIC_SECRET"]
    signature_header: X-Signature
    signature_encoding: hex
    event_id: {pointer: /event_id}
    customer_id: {pointer: /customer_id}
    event_type: {pointer: /event_type}
    schema: builtin:generic.schema.json
    destination: {url: "${destinationURL}", timeout: 5s}
`);
    const args = ['dev', '--data-dir', path.join(this.dir, 'data'), '--sources', sources,
      '--http-addr', '127.0.0.1:0', '--admin-addr', '127.0.0.1:0',
      '--kafka-listen', `127.0.0.1:${await freePort()}`, '--partitions', '2'];
    const env = { ...process.env, HOOKSTREAM_ADMIN_TOKEN: token, HOOKSTREAM_GENERIC_SECRET: secret,
      HOOKSTREAM_KAFKA_BROKERS: '', HOOKSTREAM_DATABASE_URL: '', HOOKSTREAM_ADMIN_ADDR: '', HOOKSTREAM_HTTP_ADDR: '' };
    this.proc = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.stderr = '';
    this.proc.stderr.on('data', (c) => { this.stderr += c; });
    let out = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev not ready after 120 s\n${out}\n${this.stderr}`)), 120_000);
      this.proc.on('exit', (code) => reject(new Error(`dev exited (${code}) before it was ready\n${out}\n${this.stderr}`)));
      this.proc.stdout.on('data', (c) => {
        out += c;
        const url = /hookstream dev is running at (http:\/\/\S+)/.exec(out);
        const consoleURL = /Console: +(http:\/\/\S+)\/console\//.exec(out);
        if (url && consoleURL && out.includes('Press Ctrl-C')) {
          clearTimeout(timer);
          this.url = url[1];
          this.adminURL = consoleURL[1];
          resolve();
        }
      });
    });
    return this;
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.on('exit', resolve));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // send posts a signed event to the generic source; it must be accepted.
  async send(eventID, customerID, payload = {}) {
    const body = JSON.stringify({ event_id: eventID, customer_id: customerID, event_type: 'order.created', payload });
    const sig = crypto.createHmac('sha256', secret).update(body).digest('hex');
    const res = await fetch(`${this.url}/webhooks/generic`, {
      method: 'POST', body, headers: { 'Content-Type': 'application/json', 'X-Signature': sig },
    });
    if (res.status !== 202) throw new Error(`send ${eventID}: ${res.status} ${await res.text()}`);
  }

  // status is the event's status as the admin API reports it ('' when it
  // is not known yet).
  async status(eventID) {
    return (await this.admin(`/admin/events?event_id=${encodeURIComponent(eventID)}`)).events[0]?.status ?? '';
  }

  // admin calls the admin API with the token (the tests' own look at the
  // state, beside what the browser shows).
  async admin(pathAndQuery) {
    const res = await fetch(`${this.adminURL}${pathAndQuery}`, { headers: { Authorization: `Bearer ${token}` } });
    if (res.status !== 200) throw new Error(`GET ${pathAndQuery}: ${res.status} ${await res.text()}`);
    return res.json();
  }
}

// startWorld starts a destination and a `hookstream dev` (the binary named
// by HOOKSTREAM_BIN) delivering to it; stop them with stopWorld.
export async function startWorld() {
  const binary = process.env.HOOKSTREAM_BIN;
  if (!binary) throw new Error('HOOKSTREAM_BIN names the hookstream binary (scripts/console-test.sh sets it)');
  const dest = new Destination();
  try {
    const dev = await new Dev().start(binary, await dest.start());
    return { dest, dev };
  } catch (err) {
    dest.stop(); // else its listener keeps the test process alive
    throw err;
  }
}

export async function stopWorld(world) {
  await world?.dev?.stop();
  world?.dest?.stop();
}

// eventually retries check until it returns a truthy value or the
// deadline passes; the last error or value is in the failure.
export async function eventually(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
