// What the browser scripts other than run.mjs share: starting this build's
// `tandem demo` (real TLS, its own development CA, a temporary directory),
// the pin Chromium is given for its key, a logger with times, a step
// runner with timeouts and a summary, and reading the frames a page's
// peer connections decoded.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const BIN = path.resolve(process.env.TANDEM_BIN || path.join(REPO, 'target/debug/tandem'));
export const CHROMIUM = process.env.TANDEM_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = process.env.SCREENSHOTS_DIR ? path.resolve(process.env.SCREENSHOTS_DIR) : null;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const started = Date.now();

export function log(message) {
  console.error(`[+${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

/** `tandem demo` on a free port; resolves with its links once it listens. */
export function startServer(tmp, extraArgs = []) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(BIN)) {
      reject(Object.assign(new Error(`no server binary at ${BIN} (set TANDEM_BIN)`), { exit: 2 }));
      return;
    }
    const child = spawn(BIN, ['demo', '--port', '0', '--data-dir', path.join(tmp, 'data'), '--certs-dir', path.join(tmp, 'certs'), ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    const info = { child, links: {}, serverLog: [], stdout: [] };
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start in 30 s:\n${info.serverLog.join('\n')}`)), 30000);
    child.stderr.on('data', (d) => {
      for (const line of String(d).split('\n')) if (line.trim()) info.serverLog.push(line);
      if (info.serverLog.length > 400) info.serverLog.splice(0, 100);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}):\n${info.serverLog.join('\n')}`));
    });
    child.stdout.on('data', (d) => {
      buffer += String(d);
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        info.stdout.push(line);
        let m;
        if ((m = line.match(/Admin API key:\s+(\S+)/))) info.apiKey = m[1];
        else if ((m = line.match(/Session:\s+([0-9a-f-]{36})/))) info.session = m[1];
        else if ((m = line.match(/^(clinician|patient|partner|observer)\s+(.*?)\s+(https:\/\/\S+)$/))) {
          info.links[m[1]] = { name: m[2], url: m[3] };
        } else if ((m = line.match(/Listening on https:\/\/localhost:(\d+)/))) {
          info.port = Number(m[1]);
          info.base = `https://localhost:${info.port}`;
          info.spki = spkiHash(path.join(tmp, 'certs', 'key.pem'));
          clearTimeout(timer);
          resolve(info);
        }
      }
    });
  });
}

/** The REST API, over the same pinned TLS (node trusts the demo CA). */
export async function api(server, method, urlPath, body) {
  const { default: https } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.request(`${server.base}${urlPath}`, {
      method,
      ca: server.ca,
      headers: { Authorization: `Bearer ${server.apiKey}`, 'Content-Type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch { json = text; }
        resolve({ status: res.statusCode, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${urlPath}: timeout`)));
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

export async function stopServer(server) {
  if (!server) return;
  server.child.removeAllListeners('exit');
  server.child.kill('SIGTERM');
  await Promise.race([new Promise((r) => server.child.once('exit', r)), sleep(5000)]);
}

export function spkiHash(keyPem) {
  const der = crypto.createPublicKey(fs.readFileSync(keyPem)).export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

/** Loads `url` in `page`. A network namespace that has just been set up can
 * still change under Chromium, which then fails the load with
 * ERR_NETWORK_CHANGED, as a person's browser would when Wi-Fi drops in
 * mid-load; the person reloads, and so does this, once. */
export async function openPage(page, url) {
  try {
    return await page.goto(url, { waitUntil: 'load' });
  } catch (e) {
    if (!String(e).includes('ERR_NETWORK_CHANGED')) throw e;
    log('the network changed while the page loaded; loading it again');
    return page.goto(url, { waitUntil: 'load' });
  }
}

/** Chromium's flags for a call with a fake camera and microphone, trusting exactly the server's key. */
export function chromiumArgs(spki, { loopback = true } = {}) {
  return [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    ...(loopback ? ['--allow-loopback-in-peer-connection'] : []),
    '--disable-quic',
    '--mute-audio',
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    `--ignore-certificate-errors-spki-list=${spki}`,
  ];
}

// Added to every page by the tests (not part of the client): keeps the
// page's peer connections so that the test can read their getStats.
export function observePeerConnections() {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Original);
}

/** Runs in the page: frames decoded per inbound video of the open connections. */
export async function decodedInPage() {
  const out = {};
  for (const [i, pc] of (window.__pcs || []).entries()) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out[`${i}:${s.mid}`] = s.framesDecoded || 0;
    });
  }
  return out;
}

/**
 * Runs in the page: one line per peer connection, its state and the RTP
 * packets of each stream, for a failure message that says which side
 * stopped (a sender that sends nothing, a receiver that gets nothing).
 */
export async function mediaSummaryInPage() {
  const lines = [];
  for (const [i, pc] of (window.__pcs || []).entries()) {
    const streams = [];
    try {
      if (pc.connectionState !== 'closed') {
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'outbound-rtp') streams.push(`sent ${s.kind} ${s.packetsSent}`);
          if (s.type === 'inbound-rtp') streams.push(`received ${s.kind} ${s.packetsReceived} (${s.framesDecoded ?? '-'} decoded)`);
        });
      }
    } catch (e) {
      streams.push(String(e));
    }
    lines.push(`pc ${i} ${pc.connectionState}: ${streams.join(', ') || 'no RTP'}`);
  }
  return lines.join('; ');
}

/** Waits until `n` inbound videos are decoding (framesDecoded grows); `read()` gives the counts. */
export async function waitDecoding(read, n, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  let growing = [];
  while (Date.now() < deadline) {
    await sleep(250);
    const now = await read();
    growing = Object.keys(now).filter((k) => now[k] > (last[k] ?? 0) && now[k] >= 1);
    if (growing.length >= n) return { growing, frames: growing.map((k) => now[k]) };
    last = now;
  }
  throw new Error(`${what}: ${growing.length} of ${n} inbound videos decoding after ${timeoutMs} ms (${JSON.stringify(last)})`);
}

/** Steps with a timeout each, and a summary at the end. */
export function stepper() {
  const results = [];
  let failures = 0;
  async function step(name, fn, { timeout = 30000 } = {}) {
    const t0 = Date.now();
    let timer;
    try {
      const out = await Promise.race([
        fn(),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms`)), timeout); }),
      ]);
      const ms = Date.now() - t0;
      results.push({ name, ok: true, ms });
      log(`ok   ${name} (${secs(ms)})${out && typeof out === 'string' ? `: ${out}` : ''}`);
      return out;
    } catch (e) {
      failures += 1;
      const ms = Date.now() - t0;
      results.push({ name, ok: false, ms, error: String(e && e.message ? e.message : e) });
      log(`FAIL ${name} (${secs(ms)}): ${e && e.stack ? e.stack : e}`);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
  function fail(e) {
    failures += 1;
    results.push({ name: 'setup', ok: false, ms: 0, error: String(e && e.message ? e.message : e) });
    log(`FAIL: ${e && e.stack ? e.stack : e}`);
  }
  function summary(title) {
    console.log(`\n${title}`);
    for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${secs(r.ms)})${r.ok ? '' : `\n       ${r.error.split('\n').join('\n       ')}`}`);
    console.log(`${results.filter((r) => r.ok).length} passed, ${failures} failed, ${secs(Date.now() - started)} in all`);
    return failures;
  }
  return { step, fail, summary, get failures() { return failures; } };
}

/** A watchdog: whatever hangs, `cleanup()` runs and the process fails. */
export function watchdog(ms, cleanup) {
  setTimeout(async () => {
    log(`FAIL: the whole run took more than ${ms} ms`);
    await Promise.race([cleanup(), sleep(8000)]).catch(() => {});
    process.exit(1);
  }, ms).unref();
}
