// End-to-end encrypted sessions in the browser client (issue 19), for
// tests/integration/web_client_e2ee.rs (cargo test).
//
// Starts this build's `tandem demo` (its session's `e2ee` setting is
// `preferred`) and drives headless Chromium: the clinician, the patient and
// the partner join, and then
// - each page decodes the other two videos and both voices, through the
//   SFrame transform on every sender and receiver;
// - each page shows "End-to-end encrypted" and the same "Safety code";
// - no media key or ECDH secret any page imported (captured by an init
//   script wrapping crypto.subtle.importKey) appears in any WebSocket frame
//   a page sent or received, nor in the server's log (RUST_LOG=debug for
//   tandem): the server relayed opaque blobs only;
// - a partner whose socket is routed through a "lying server" that swaps
//   the clinician's public key sees a different safety code;
// - after the partner is removed, the others use new key ids; the partner
//   holds none of the new keys, and a frame sealed under the clinician's
//   new key does not open with any key the partner held.
//
// Screenshots into $SCREENSHOTS_DIR when set (docs/screenshots/e2ee-*.png).

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

import {
  BIN, CHROMIUM, SHOTS, api, chromiumArgs, log, observePeerConnections, sleep, startServer, stepper, stopServer, watchdog,
} from './server.mjs';

// ---------------------------------------------------------------- in the page

/**
 * Init script (test only): keeps every secret the page imports as a raw
 * HKDF key (media keys and ECDH secrets), and which SFrame KID each media
 * key was derived for.
 */
function captureKeys() {
  const subtle = crypto.subtle;
  const importKey = subtle.importKey.bind(subtle);
  const deriveKey = subtle.deriveKey.bind(subtle);
  const raws = new WeakMap();
  const bytes = (d) => new Uint8Array(ArrayBuffer.isView(d) ? d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength) : d);
  const b64 = (u8) => btoa(String.fromCharCode(...u8));
  window.__secrets = [];
  window.__sframe = [];
  subtle.importKey = async (format, data, alg, ...rest) => {
    const key = await importKey(format, data, alg, ...rest);
    const name = typeof alg === 'string' ? alg : alg && alg.name;
    if (format === 'raw' && name === 'HKDF') {
      const text = b64(bytes(data));
      raws.set(key, text);
      window.__secrets.push(text);
    }
    return key;
  };
  subtle.deriveKey = async (alg, base, ...rest) => {
    const key = await deriveKey(alg, base, ...rest);
    if (alg && alg.name === 'HKDF' && raws.has(base)) {
      const info = bytes(alg.info);
      const label = 'SFrame 1.0 Secret key ';
      if (new TextDecoder().decode(info.subarray(0, label.length)) === label) {
        const view = new DataView(info.buffer, info.byteOffset + label.length);
        window.__sframe.push({ kid: view.getUint32(0) * 2 ** 32 + view.getUint32(4), raw: raws.get(base) });
      }
    }
    return key;
  };
}

/** Per inbound stream of one kind: frames decoded (video) or samples not concealed (audio). */
async function inboundInPage(kind) {
  const out = {};
  for (const [i, pc] of (window.__pcs || []).entries()) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== kind) return;
      out[`${i}:${s.mid}`] = kind === 'video' ? s.framesDecoded || 0 : (s.totalSamplesReceived || 0) - (s.concealedSamples || 0);
    });
  }
  return out;
}

/** Whether every sender and receiver of the open connections has a transform. */
function transformsInPage() {
  let senders = 0;
  let receivers = 0;
  let bare = 0;
  for (const pc of window.__pcs || []) {
    if (pc.connectionState !== 'connected') continue;
    for (const t of pc.getTransceivers()) {
      if (t.currentDirection === 'sendonly') {
        senders += 1;
        if (!t.sender.transform) bare += 1;
      } else if (t.currentDirection === 'recvonly') {
        receivers += 1;
        if (!t.receiver.transform) bare += 1;
      }
    }
  }
  return { senders, receivers, bare };
}

// ---------------------------------------------------------------- SFrame in Node

const SUITE = 0x0004;

function sframeKeys(raw, kid) {
  const label = (what) => {
    const prefix = Buffer.from(`SFrame 1.0 Secret ${what} `);
    const tail = Buffer.alloc(10);
    tail.writeBigUInt64BE(BigInt(kid));
    tail.writeUInt16BE(SUITE, 8);
    return Buffer.concat([prefix, tail]);
  };
  return {
    key: Buffer.from(crypto.hkdfSync('sha256', raw, Buffer.alloc(0), label('key'), 16)),
    salt: Buffer.from(crypto.hkdfSync('sha256', raw, Buffer.alloc(0), label('salt'), 12)),
  };
}

function nonce(salt, ctr) {
  const iv = Buffer.from(salt);
  const c = Buffer.alloc(8);
  c.writeBigUInt64BE(BigInt(ctr));
  for (let i = 0; i < 8; i += 1) iv[4 + i] ^= c[i];
  return iv;
}

/** A delta frame (3 clear bytes) sealed as e2ee-worker.js does, KID ≥ 8 and CTR < 8. */
function seal(raw, kid, ctr, payload) {
  const { key, salt } = sframeKeys(raw, kid);
  const kidBytes = Buffer.alloc(4);
  kidBytes.writeUInt32BE(kid);
  const head = Buffer.concat([Buffer.from([0x80 | (3 << 4) | ctr]), kidBytes]);
  const clear = payload.subarray(0, 3);
  const cipher = crypto.createCipheriv('aes-128-gcm', key, nonce(salt, ctr));
  cipher.setAAD(Buffer.concat([head, clear]));
  const body = Buffer.concat([cipher.update(payload.subarray(3)), cipher.final(), cipher.getAuthTag()]);
  return { clear, head, body };
}

function opens(raw, kid, ctr, frame) {
  const { key, salt } = sframeKeys(raw, kid);
  try {
    const decipher = crypto.createDecipheriv('aes-128-gcm', key, nonce(salt, ctr));
    decipher.setAAD(Buffer.concat([frame.head, frame.clear]));
    decipher.setAuthTag(frame.body.subarray(frame.body.length - 16));
    decipher.update(frame.body.subarray(0, frame.body.length - 16));
    decipher.final();
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- main

const steps = stepper();
const { step, fail, summary } = steps;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-e2ee-'));
let server;
let browser;
const cleanup = async () => {
  if (browser) await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
  await stopServer(server);
  fs.rmSync(tmp, { recursive: true, force: true });
};
watchdog(Number(process.env.WATCHDOG_MS || 300000), cleanup);

// Everything the pages' sockets carried, both ways, and the server's log.
const frames = [];
let serverText = '';
const problems = [];

const role = (page, name) => page.getByRole('button', { name, exact: true });
const panel = (page) => page.getByRole('complementary', { name: 'Clinician panel' });
const tile = (page, name) => page.locator('figure.tile').filter({ has: page.locator('.tile-name', { hasText: new RegExp(`^${name}$`) }) });

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await sleep(500);
  await page.evaluate(() => document.getElementById('live').classList.remove('show'));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled' });
  log(`screenshot ${name}.png`);
}

async function waitGrowing(page, kind, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = await page.evaluate(inboundInPage, kind);
  let growing = [];
  while (Date.now() < deadline) {
    await sleep(700);
    const now = await page.evaluate(inboundInPage, kind);
    growing = Object.keys(now).filter((k) => now[k] > (last[k] ?? 0) && now[k] >= 5);
    if (growing.length >= n) return growing.length;
    last = now;
  }
  throw new Error(`${growing.length} of ${n} inbound ${kind} streams decoding after ${timeoutMs} ms (${JSON.stringify(last)})`);
}

/** The page's indicator and safety code, as shown. */
async function shown(page) {
  return page.evaluate(() => ({
    mode: document.getElementById('e2ee-mode').textContent,
    visible: !document.getElementById('e2ee-bar').hidden,
    code: document.getElementById('e2ee-code').hidden ? '' : document.getElementById('e2ee-code').textContent,
  }));
}

async function waitSameCode(pages, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let codes = [];
  while (Date.now() < deadline) {
    codes = await Promise.all(pages.map(async (p) => (await shown(p.page)).code));
    if (codes[0] && codes.every((c) => c === codes[0])) return codes[0];
    await sleep(200);
  }
  throw new Error(`the safety codes differ: ${JSON.stringify(codes)}`);
}

try {
  if (!fs.existsSync(BIN)) throw Object.assign(new Error(`no server binary at ${BIN}`), { exit: 2 });
  process.env.RUST_LOG = 'info,tandem=debug';
  server = await startServer(tmp);
  server.child.stderr.on('data', (d) => { serverText += String(d); });
  server.child.stdout.on('data', (d) => { serverText += String(d); });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(server.spki) });
  log(`Chromium ${browser.version()}, server ${server.base}`);

  async function open(who, url, extraInit) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'America/New_York' });
    await context.addInitScript(observePeerConnections);
    await context.addInitScript(captureKeys);
    if (extraInit) await context.addInitScript(extraInit);
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`${who}: page error: ${e}`));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`${who}: CSP: ${m.text()}`);
      if (m.type() === 'error' || m.type() === 'warning') log(`${who} console.${m.type()}: ${m.text()}`);
    });
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => frames.push(String(f.payload)));
      ws.on('framereceived', (f) => frames.push(String(f.payload)));
    });
    const response = await page.goto(url, { waitUntil: 'load' });
    if (!response || response.status() !== 200) throw new Error(`${who}: HTTP ${response && response.status()}`);
    return { page, context, who };
  }

  async function join(p, state) {
    // The pre-call check is done (its verdict may say "slow" on a loaded
    // machine: the pings' round trip is measured, and that is not what
    // this test is about).
    await p.page.waitForFunction(() => ['good', 'slow', 'bad'].includes(document.getElementById('verdict')?.dataset.state), null, { timeout: 30000 });
    if (state) {
      await p.page.getByLabel('Which state are you in right now?').selectOption(state);
      await p.page.getByLabel('At home').check();
      await p.page.getByLabel("Yes, it's private").check();
    }
    await role(p.page, 'Join session').click();
  }

  let clin;
  let pat;
  let par;
  let all = [];
  let code;

  await step('three people join an E2EE room; each decodes the other two videos and voices', async () => {
    clin = await open('clinician', server.links.clinician.url);
    await join(clin);
    await panel(clin.page).waitFor({ timeout: 30000 });
    pat = await open('patient', server.links.patient.url);
    await join(pat, 'NY');
    par = await open('partner', server.links.partner.url);
    await join(par, 'NJ');
    await panel(clin.page).getByRole('listitem').filter({ hasText: 'Sam Morgan' }).waitFor({ timeout: 30000 });
    await role(clin.page, 'Admit all').click();
    all = [clin, pat, par];
    const counts = [];
    for (const p of all) {
      counts.push(`${p.who}: ${await waitGrowing(p.page, 'video', 2, 25000)} videos`);
      counts.push(`${await waitGrowing(p.page, 'audio', 2, 15000)} voices`);
      const t = await p.page.evaluate(transformsInPage);
      if (t.bare || t.senders < 2 || t.receivers < 4) throw new Error(`${p.who}: not every sender and receiver is transformed: ${JSON.stringify(t)}`);
    }
    return counts.join(', ');
  }, { timeout: 150000 });

  await step('every page shows "End-to-end encrypted" and the same safety code', async () => {
    code = await waitSameCode(all, 20000);
    for (const p of all) {
      const s = await shown(p.page);
      if (!s.visible || s.mode !== 'End-to-end encrypted') throw new Error(`${p.who}: ${JSON.stringify(s)}`);
      if (!/^Safety code \d{4} \d{4} \d{4}$/.test(s.code)) throw new Error(`${p.who}: ${s.code}`);
      await p.page.getByText(s.code, { exact: true }).waitFor({ state: 'visible', timeout: 10000 });
    }
    await shot(clin.page, 'e2ee-call');
    return code;
  }, { timeout: 60000 });

  await step('the server never sees a media key: not in any frame it relayed, nor in its log', async () => {
    const secrets = new Set();
    for (const p of all) for (const s of await p.page.evaluate(() => window.__secrets)) secrets.add(s);
    const media = (await Promise.all(all.map((p) => p.page.evaluate(() => window.__sframe)))).flat();
    if (media.length < 6) throw new Error(`only ${media.length} media keys captured`);
    const relayed = frames.filter((f) => f.includes('"e2ee_media_key"')).length;
    if (relayed < 6) throw new Error(`only ${relayed} e2ee_media_key frames seen`);
    if (!/room event/.test(serverText)) throw new Error('the server log is not captured');
    const haystack = `${frames.join('\n')}\n${serverText}`;
    for (const s of secrets) {
      const raw = Buffer.from(s, 'base64');
      for (const form of [s, s.replace(/=+$/, ''), raw.toString('base64url'), raw.toString('hex'), raw.toString('hex').toUpperCase()]) {
        if (haystack.includes(form)) throw new Error(`a key the server must not see is in what it relayed or logged: ${form.slice(0, 6)}…`);
      }
    }
    return `${secrets.size} secrets (${media.length} media keys) absent from ${frames.length} frames and ${serverText.length} bytes of log`;
  });

  await step('a server that swaps a public key in transit: the safety codes differ', async () => {
    const attacker = crypto.createECDH('prime256v1');
    attacker.generateKeys();
    const fake = attacker.getPublicKey().toString('base64');
    await par.context.routeWebSocket(/\/v1\/signal$/, (ws) => {
      const real = ws.connectToServer();
      ws.onMessage((m) => real.send(m));
      real.onMessage((m) => {
        let out = m;
        try {
          const o = JSON.parse(m);
          if (o.type === 'e2ee_public_key' && o.participant === 'demo-clinician') out = JSON.stringify({ ...o, public_key: fake });
        } catch {
          // not JSON: as is
        }
        ws.send(out);
      });
    });
    // A reload leaves; back in the waiting room, through the lying route.
    await par.page.reload();
    await join(par, 'NJ');
    const waiting = panel(clin.page).getByRole('list', { name: /Waiting room/ }).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
    await waiting.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 30000 });
    await tile(par.page, 'Dr Rivera').waitFor({ timeout: 30000 });
    const deadline = Date.now() + 20000;
    let codes;
    while (Date.now() < deadline) {
      codes = await Promise.all(all.map(async (p) => (await shown(p.page)).code));
      if (codes.every(Boolean) && codes[0] === codes[1] && codes[0] !== code && codes[2] !== codes[0]) break;
      await sleep(200);
    }
    if (!(codes[0] === codes[1] && codes[2] && codes[2] !== codes[0])) throw new Error(`codes: ${JSON.stringify(codes)}`);
    // The patient's key still reaches the partner: one of the two videos.
    await waitGrowing(par.page, 'video', 1, 30000);
    await shot(par.page, 'e2ee-code-differs');
    return `clinician and patient ${codes[0]}; the deceived partner ${codes[2]}`;
  }, { timeout: 90000 });

  await step('removal: new keys for what follows, none of which the removed partner holds', async () => {
    const ownKid = (p) => p.page.evaluate(() => Number(document.getElementById('e2ee-bar').dataset.keyId));
    const before = await ownKid(clin);
    const partnerKeys = await par.page.evaluate(() => window.__sframe);
    const row = panel(clin.page).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
    await row.getByRole('button', { name: 'Remove', exact: true }).click();
    await clin.page.getByRole('dialog', { name: 'Remove Sam Morgan?' }).getByRole('button', { name: 'Remove', exact: true }).click();
    await par.page.getByRole('heading', { name: "You've been removed from the session" }).waitFor({ timeout: 30000 });
    let after = before;
    const deadline = Date.now() + 15000;
    while (after === before && Date.now() < deadline) {
      await sleep(100);
      after = await ownKid(clin);
    }
    if (after === before) throw new Error(`the clinician's key id is still ${before}`);
    const clinKeys = await clin.page.evaluate(() => window.__sframe);
    const current = clinKeys.filter((k) => k.kid === after).pop();
    if (!current) throw new Error(`no key for the clinician's new id ${after}`);
    if (partnerKeys.some((k) => k.kid === after || k.raw === current.raw)) throw new Error('the removed partner holds the new key');
    const payload = crypto.randomBytes(200);
    const frame = seal(Buffer.from(current.raw, 'base64'), after, 1, payload);
    if (!opens(Buffer.from(current.raw, 'base64'), after, 1, frame)) throw new Error('the new key does not open its own frame');
    const opened = partnerKeys.filter((k) => opens(Buffer.from(k.raw, 'base64'), after, 1, frame) || opens(Buffer.from(k.raw, 'base64'), k.kid, 1, frame));
    if (opened.length) throw new Error('a key the partner held opens a frame sent after the removal');
    // The two who stayed still see and hear each other.
    await waitGrowing(pat.page, 'video', 1, 30000);
    await waitSameCode([clin, pat], 20000);
    return `key id ${before} → ${after}; none of the partner's ${partnerKeys.length} keys opens a frame under it`;
  }, { timeout: 90000 });

  await step('a required room: a browser that cannot encrypt is refused in words; one that can joins encrypted', async () => {
    server.ca = fs.readFileSync(path.join(tmp, 'certs', fs.readdirSync(path.join(tmp, 'certs')).find((f) => /ca.*\.pem$/.test(f) && !/key/.test(f))));
    const now = new Date();
    const created = await api(server, 'POST', '/v1/sessions', {
      title: 'Individual session', kind: 'individual',
      starts_at: now.toISOString(), ends_at: new Date(now.getTime() + 60 * 60000).toISOString(),
      clinician: { id: 'clin-r', name: 'Dr Rivera' },
      participants: [{ id: 'pat-r', name: 'Alex Morgan', role: 'patient' }],
      settings: { e2ee: 'required' },
    });
    if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
    const invites = (await api(server, 'POST', `/v1/sessions/${created.json.id}/invites`)).json.invites;
    const url = (id) => invites.find((i) => i.participant_id === id).url;
    const old = await open('browser without RTCRtpScriptTransform', url('pat-r'), () => { delete window.RTCRtpScriptTransform; });
    await join(old, 'NY');
    await old.page.getByRole('heading', { name: "This browser can't join this session" }).waitFor({ timeout: 30000 });
    await old.page.getByText('Please open your link in a current Chrome, Edge, Firefox or Safari.').waitFor({ timeout: 2000 });
    await shot(old.page, 'e2ee-refused');
    const able = await open('required clinician', url('clin-r'));
    await join(able);
    await panel(able.page).waitFor({ timeout: 30000 });
    await able.page.getByText('End-to-end encrypted', { exact: true }).waitFor({ timeout: 10000 });
    await waitSameCode([able], 10000);
    const s = await shown(able.page);
    if (s.mode !== 'End-to-end encrypted' || !s.code) throw new Error(JSON.stringify(s));
    return `refused: "This browser can't join this session"; the clinician: ${s.mode}`;
  }, { timeout: 90000 });

  await step('no page errors and no CSP refusals', async () => {
    if (problems.length) throw new Error(problems.join('\n'));
  });
} catch (e) {
  fail(e);
}
await cleanup();
process.exit(summary('End-to-end encryption (Chromium)') ? 1 : 0);
