// The browser client, end to end: a real Tandem server (`tandem demo`, real
// TLS with its development CA) and headless Chromium (Debian's, driven by
// playwright-core) with a fake camera and microphone. A couple and their
// clinician open their three links and go through the whole session.
//
//   TANDEM_BIN=target/debug/tandem node web-client/tests/run.mjs
//
// Environment:
//   TANDEM_BIN        the server binary (default: target/debug/tandem)
//   TANDEM_CHROMIUM   the browser (default: /usr/bin/chromium)
//   SCREENSHOTS_DIR   write screenshots there (docs/screenshots to refresh the README's)
//   KEEP_TMP=1        keep the server's temporary directory
//
// Prints one line per step with its time and a summary; exits 0 when every
// step passed, 1 otherwise, 2 when it cannot start.
//
// TLS: Chromium accepts exactly the server's key
// (--ignore-certificate-errors-spki-list); every other certificate error
// still fails. The page's RTCPeerConnections are observed through a script
// the test adds to each page (addInitScript), not through any hook in the
// client.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  BIN, CHROMIUM, SHOTS, log, observePeerConnections, sleep, spkiHash, stepper,
  api,
} from './server.mjs';

// ---------------------------------------------------------------- the server

function startServer(tmp) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['demo', '--port', '0', '--data-dir', path.join(tmp, 'data'), '--certs-dir', path.join(tmp, 'certs')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    const info = { child, links: {}, serverLog: [] };
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
        let m;
        if ((m = line.match(/Admin API key:\s+(\S+)/))) info.apiKey = m[1];
        else if ((m = line.match(/Session:\s+([0-9a-f-]{36})/))) info.session = m[1];
        else if ((m = line.match(/^(clinician|patient|partner|observer)\s+(.*?)\s+(https:\/\/\S+)$/))) {
          info.links[m[1]] = { name: m[2], url: m[3] };
        } else if ((m = line.match(/Listening on https:\/\/localhost:(\d+)/))) {
          info.port = Number(m[1]);
          info.base = `https://localhost:${info.port}`;
          clearTimeout(timer);
          resolve(info);
        }
      }
    });
  });
}

/** An invite JWT (EdDSA) signed with the server's key, for the expired-link check. */
function signInvite(keyPem, claims) {
  const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const input = `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64(claims)}`;
  // The key file is PKCS#8 v2 (with the public key), which node's OpenSSL
  // does not read: rebuild a v1 PKCS#8 from its 32-byte Ed25519 seed.
  const der = Buffer.from(fs.readFileSync(keyPem, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const at = der.indexOf(Buffer.from('04220420', 'hex'));
  const seed = der.subarray(at + 4, at + 36);
  const key = crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  const signature = crypto.sign(null, Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}


// ---------------------------------------------------------------- the pages

/** Per inbound video stream of the page's open connections: frames decoded. */
async function readDecoded(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const [i, pc] of window.__pcs.entries()) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') out[`${i}:${s.mid}`] = s.framesDecoded || 0;
      });
    }
    return out;
  });
}

/** Waits until at least `n` inbound videos of the page are decoding (framesDecoded grows). */
async function waitDecoding(page, n, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last = await readDecoded(page);
  let growing = [];
  while (Date.now() < deadline) {
    await sleep(700);
    const now = await readDecoded(page);
    growing = Object.keys(now).filter((k) => now[k] > (last[k] ?? 0) && now[k] >= 5);
    if (growing.length >= n) return { growing, frames: growing.map((k) => now[k]) };
    last = now;
  }
  throw new Error(`${what}: ${growing.length} of ${n} inbound videos decoding after ${timeoutMs} ms (${JSON.stringify(last)})`);
}

// ---------------------------------------------------------------- steps

const steps = stepper();
const { step, fail, summary } = steps;

async function shot(page, name, opts = {}) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  // Let the videos settle and the status toast fade.
  await sleep(opts.wait ?? 400);
  // The status toast (the aria-live captions) would cover the top of the
  // picture; the screenshots show the screen under it.
  if (!opts.toast) await page.evaluate(() => document.getElementById('live').classList.remove('show'));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: !!opts.fullPage, animations: 'disabled' });
  log(`screenshot ${name}.png`);
}

const expectVisible = (locator, timeout = 10000) => locator.first().waitFor({ state: 'visible', timeout });

// ---------------------------------------------------------------- main

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-web-'));
let server;
let browser;
// A watchdog: whatever hangs, stop Chromium and the server and fail.
const WATCHDOG_MS = Number(process.env.WATCHDOG_MS || 180000);
setTimeout(async () => {
  log(`FAIL: the whole run took more than ${WATCHDOG_MS} ms`);
  if (server) server.child.kill('SIGKILL');
  if (browser) await Promise.race([browser.close(), sleep(3000)]).catch(() => {});
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
}, WATCHDOG_MS).unref();
const pageProblems = [];
try {
  if (!fs.existsSync(BIN)) throw Object.assign(new Error(`no server binary at ${BIN} (set TANDEM_BIN)`), { exit: 2 });
  server = await startServer(tmp);
  server.ca = fs.readFileSync(path.join(tmp, 'certs', fs.readdirSync(path.join(tmp, 'certs')).find((f) => /ca.*\.pem$/.test(f) && !/key/.test(f))));
  for (const role of ['clinician', 'patient', 'partner']) {
    if (!server.links[role]) throw new Error(`no ${role} link in the demo's output`);
  }
  log(`server on ${server.base}, session ${server.session}`);
  const spki = spkiHash(path.join(tmp, 'certs', 'key.pem'));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--auto-select-desktop-capture-source=Entire screen',
      '--allow-loopback-in-peer-connection',
      '--disable-quic',
      '--mute-audio',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
  log(`Chromium ${browser.version()}`);

  async function open(who, url, { width = 1280, height = 800, timezoneId = 'America/New_York' } = {}) {
    const context = await browser.newContext({ viewport: { width, height }, locale: 'en-US', timezoneId, ignoreHTTPSErrors: false });
    await context.addInitScript(observePeerConnections);
    const page = await context.newPage();
    page.on('console', (m) => {
      const text = m.text();
      if (/Content Security Policy|Refused to/i.test(text)) pageProblems.push(`${who}: CSP: ${text}`);
      if (m.type() === 'error') log(`${who} console.error: ${text}`);
    });
    page.on('pageerror', (e) => pageProblems.push(`${who}: page error: ${e}`));
    const response = await page.goto(url, { waitUntil: 'load' });
    if (!response || response.status() !== 200) throw new Error(`${who}: HTTP ${response && response.status()}`);
    return { page, context, who };
  }

  const role = (page, name) => page.getByRole('button', { name, exact: true });
  const toolbar = (page) => page.getByRole('toolbar', { name: 'Call controls' });
  const panel = (page) => page.getByRole('complementary', { name: 'Clinician panel' });
  const tile = (page, name) => page.locator('figure.tile').filter({ has: page.locator('.tile-name', { hasText: new RegExp(`^${name}$`) }) });
  const liveSays = (page, text, timeout = 10000) => page.waitForFunction((t) => document.getElementById('live').textContent.includes(t), text, { timeout, polling: 100 });

  async function attest(page, state) {
    await page.getByLabel('Which state are you in right now?').selectOption(state);
    await page.getByLabel('At home').check();
    await page.getByLabel("Yes, it's private").check();
  }

  let clin;
  let pat;
  let par;

  await step('clinician: pre-call check, join by keyboard, the panel appears', async () => {
    clin = await open('clinician', server.links.clinician.url);
    await expectVisible(clin.page.getByRole('heading', { name: 'Get ready for your session' }));
    // The token is out of the address bar (and the history) once read.
    if (clin.page.url().includes('#') || clin.page.url().includes(server.links.clinician.url.split('#t=')[1])) {
      throw new Error(`the token is still in the address bar: ${clin.page.url()}`);
    }
    await expectVisible(clin.page.getByText('Your connection looks good'), 15000);
    if (await clin.page.getByLabel('Which state are you in right now?').isVisible()) throw new Error('the clinician is asked for an attestation');
    await role(clin.page, 'Join session').focus();
    await clin.page.keyboard.press('Enter');
    await expectVisible(panel(clin.page));
    await expectVisible(clin.page.getByText('No one is waiting.'));
  });

  await step('clinician: "Notify me" asks for permission on a click; the tab goes to the background', async () => {
    const notify = role(clin.page, 'Notify me when someone is waiting');
    await expectVisible(notify);
    // Granting replaces the page's permissions: camera and microphone stay.
    await clin.context.grantPermissions(['notifications', 'camera', 'microphone'], { origin: new URL(server.base).origin });
    await notify.click();
    await notify.waitFor({ state: 'hidden', timeout: 5000 });
    // Record every Notification and every tone; then hide the tab as a
    // switch to another tab or window would.
    await clin.page.evaluate(() => {
      window.alerts = { notifications: [], tones: 0 };
      const Real = window.Notification;
      window.Notification = class extends Real {
        constructor(title, options) {
          window.alerts.notifications.push({ title, body: options && options.body });
          super(title, options);
        }
      };
      const start = OscillatorNode.prototype.start;
      OscillatorNode.prototype.start = function (...args) { window.alerts.tones += 1; return start.apply(this, args); };
      window.setVisibility = (state) => {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' });
        document.dispatchEvent(new Event('visibilitychange'));
      };
      window.setVisibility('hidden');
    });
  });

  await step('patient: pre-call check (camera preview, level meter, pickers, connection verdict), attestation, waiting room', async () => {
    pat = await open('patient', server.links.patient.url);
    await expectVisible(pat.page.getByText('Your connection looks good'), 15000);
    const preview = await pat.page.locator('#preview').evaluate((v) => ({ w: v.videoWidth, h: v.videoHeight }));
    if (!preview.w) throw new Error('no camera preview');
    // The meter moves with the fake microphone's beeps.
    await pat.page.waitForFunction(() => Number(document.getElementById('meter').getAttribute('aria-valuenow')) > 0, null, { timeout: 8000 });
    for (const label of ['Camera', 'Microphone', 'Speaker']) await expectVisible(pat.page.getByLabel(label, { exact: true }));
    // Joining without the attestation says what is missing.
    await role(pat.page, 'Join session').click();
    await expectVisible(pat.page.getByText('Please choose the state you are in.'));
    await attest(pat.page, 'NY');
    await pat.page.evaluate(() => window.scrollTo(0, 0));
    await sleep(800);
    // Catch the meter while the fake microphone beeps.
    await pat.page.waitForFunction(() => /scaleX\(0\.[3-9]|scaleX\(1/.test(document.getElementById('meter-fill').style.transform), null, { timeout: 5000, polling: 20 }).catch(() => {});
    await shot(pat.page, 'pre-call', { wait: 0, fullPage: true });
    await role(pat.page, 'Join session').click();
    await expectVisible(pat.page.getByRole('heading', { name: "You're in the waiting room" }));
    await expectVisible(pat.page.getByText('Your clinician will let you in.'));
    await shot(pat.page, 'waiting-room', { wait: 600 });
  });

  await step('partner (a 360 px phone): attestation, waiting room', async () => {
    par = await open('partner', server.links.partner.url, { width: 360, height: 780 });
    await expectVisible(par.page.getByText('Your connection looks good'), 15000);
    await attest(par.page, 'NJ');
    await sleep(800);
    await par.page.waitForFunction(() => /scaleX\(0\.[3-9]|scaleX\(1/.test(document.getElementById('meter-fill').style.transform), null, { timeout: 5000, polling: 20 }).catch(() => {});
    await shot(par.page, 'pre-call-360', { fullPage: true, wait: 0 });
    await role(par.page, 'Join session').click();
    await expectVisible(par.page.getByRole('heading', { name: "You're in the waiting room" }));
    await shot(par.page, 'waiting-room-360', { wait: 600 });
  });

  await step('clinician, tab hidden: each arrival chimes and notifies (no names); the title counts; back on the tab it clears', async () => {
    await clin.page.waitForFunction(() => document.title === '(2) waiting — Tandem', null, { timeout: 10000, polling: 100 })
      .catch(async () => { throw new Error(`title: ${await clin.page.title()}`); });
    const alerts = await clin.page.evaluate(() => window.alerts);
    if (alerts.notifications.length !== 2) throw new Error(`notifications: ${JSON.stringify(alerts)}`);
    if (alerts.tones < 2) throw new Error(`no tone played: ${JSON.stringify(alerts)}`);
    const last = alerts.notifications[1];
    if (last.title !== 'Someone is waiting to join' || last.body !== '2 people are in your waiting room.') throw new Error(`notification: ${JSON.stringify(last)}`);
    if (/Alex|Sam|Morgan/.test(JSON.stringify(alerts))) throw new Error(`a name in a notification: ${JSON.stringify(alerts)}`);
    await clin.page.evaluate(() => window.setVisibility('visible'));
    const title = await clin.page.title();
    if (title.includes('(2) waiting —') || !title.startsWith('(2 waiting) ')) throw new Error(`title once visible: ${title}`);
  });

  await step('clinician: both wait in the lobby; Admit one (keyboard), Admit all', async () => {
    const list = clin.page.getByRole('list', { name: /Waiting room/ });
    await expectVisible(list.getByRole('listitem').filter({ hasText: 'Alex Morgan' }));
    await expectVisible(list.getByRole('listitem').filter({ hasText: 'Sam Morgan' }));
    await shot(clin.page, 'clinician-lobby', { wait: 300 });
    const admit = list.getByRole('listitem').filter({ hasText: 'Alex Morgan' }).getByRole('button', { name: 'Admit', exact: true });
    await admit.focus();
    await clin.page.keyboard.press('Enter');
    await expectVisible(tile(clin.page, 'Alex Morgan'));
    await role(clin.page, 'Admit all').click();
    await expectVisible(tile(clin.page, 'Sam Morgan'));
    await expectVisible(clin.page.getByText('No one is waiting.'));
  });

  await step('every page decodes the other two videos (framesDecoded grows on each)', async () => {
    const done = await Promise.all([clin, pat, par].map(async (p) => {
      const r = await waitDecoding(p.page, 2, 20000, p.who);
      return `${p.who} ${r.frames.join('+')}`;
    }));
    for (const [p, others] of [[clin, ['Alex Morgan', 'Sam Morgan']], [pat, ['Dr Rivera', 'Sam Morgan']], [par, ['Dr Rivera', 'Alex Morgan']]]) {
      for (const name of others) {
        await expectVisible(tile(p.page, name));
        const shown = await tile(p.page, name).locator('video').evaluate((v) => v.videoWidth > 0);
        if (!shown) throw new Error(`${p.who}: ${name}'s tile shows no video`);
        const role = await tile(p.page, name).locator('.tile-role').textContent();
        if (!role) throw new Error(`${p.who}: ${name}'s tile has no role`);
      }
    }
    return done.join(', ');
  });

  await step('screenshots of the call (3-person grid, clinician panel, 360 px)', async () => {
    await clin.page.waitForFunction(() => [...document.querySelectorAll('.quality-text')].every((q) => /% loss/.test(q.textContent)), null, { timeout: 8000 });
    await shot(pat.page, 'call-grid', { wait: 2500 });
    await shot(clin.page, 'clinician-panel', { wait: 200 });
    await shot(par.page, 'call-360', { fullPage: true, wait: 200 });
    const overflow = await par.page.evaluate(() => document.documentElement.scrollWidth);
    if (overflow > 360) throw new Error(`the call page is ${overflow} px wide at 360 px`);
  });

  await step('clinician panel: per-participant quality (bitrate, loss) and the session timer', async () => {
    const row = panel(clin.page).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
    const quality = /(Good|Fair|Poor) · [\d.]+ (Mbps|kbps) · [\d.]+% loss/;
    await row.locator('.quality-text').filter({ hasText: quality }).waitFor({ timeout: 8000 })
      .catch(async () => { throw new Error(`quality: ${await row.locator('.quality-text').textContent()}`); });
    const text = await row.locator('.quality-text').textContent();
    const t1 = await clin.page.locator('#timer').textContent();
    await sleep(1100);
    const t2 = await clin.page.locator('#timer').textContent();
    if (t1 === t2) throw new Error(`the timer does not move (${t1})`);
    return `${text}; timer ${t2}`;
  });

  await step('mute and camera-off are reflected on the other pages and in attendance (audio_only)', async () => {
    const bar = toolbar(pat.page);
    await bar.getByRole('button', { name: 'Mute', exact: true }).click();
    await expectVisible(bar.getByRole('button', { name: 'Unmute', exact: true }));
    for (const p of [clin, par]) await expectVisible(tile(p.page, 'Alex Morgan').getByText('Microphone off'));
    await bar.getByRole('button', { name: 'Turn camera off', exact: true }).click();
    await expectVisible(bar.getByRole('button', { name: 'Turn camera on', exact: true }));
    for (const p of [clin, par]) await expectVisible(tile(p.page, 'Alex Morgan').getByText('Camera off'));
    await sleep(1500);
    await bar.getByRole('button', { name: 'Turn camera on', exact: true }).click();
    await bar.getByRole('button', { name: 'Unmute', exact: true }).click();
    for (const p of [clin, par]) {
      await tile(p.page, 'Alex Morgan').getByText('Camera off').waitFor({ state: 'detached', timeout: 10000 });
      await tile(p.page, 'Alex Morgan').getByText('Microphone off').waitFor({ state: 'detached', timeout: 10000 });
    }
    // The camera came back: the others decode it again.
    await clin.page.waitForFunction(() => [...document.querySelectorAll('figure.tile')].filter((t) => !t.classList.contains('no-video')).length >= 3, null, { timeout: 10000 });
    let intervals = [];
    for (let i = 0; i < 20; i += 1) {
      const report = await api(server, 'GET', `/v1/attendance/sessions/${server.session}`);
      if (report.status !== 200) throw new Error(`attendance: HTTP ${report.status} ${JSON.stringify(report.json)}`);
      const alex = report.json.participants.find((x) => x.participant_id === 'demo-patient');
      intervals = alex ? alex.intervals : [];
      if (intervals.some((x) => x.modality === 'audio_only') && alex.attestation?.state === 'NY') {
        return `Alex's intervals: ${intervals.map((x) => x.modality).join(', ')}; attestation ${JSON.stringify({ state: alex.attestation.state, at_home: alex.attestation.at_home, private: alex.attestation.private })}`;
      }
      await sleep(500);
    }
    throw new Error(`no audio_only interval for Alex: ${JSON.stringify(intervals)}`);
  });

  await step('clinician mutes the partner without unmute; Unmute is disabled until allowed', async () => {
    await panel(clin.page).getByLabel('People I mute can unmute themselves').uncheck();
    const row = panel(clin.page).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
    await row.getByRole('button', { name: 'Mute', exact: true }).click();
    const unmute = toolbar(par.page).getByRole('button', { name: 'Unmute', exact: true });
    await expectVisible(unmute);
    if (!(await unmute.isDisabled())) throw new Error('Unmute is enabled after a mute without unmute');
    await expectVisible(par.page.getByText('Your clinician has muted you.'));
    await expectVisible(tile(pat.page, 'Sam Morgan').getByText('Microphone off'));
    await row.getByRole('button', { name: 'Allow unmute', exact: true }).click();
    await par.page.waitForFunction(() => !document.getElementById('btn-mic').disabled, null, { timeout: 10000 });
    await unmute.click();
    await tile(clin.page, 'Sam Morgan').getByText('Microphone off').waitFor({ state: 'detached', timeout: 10000 });
    await panel(clin.page).getByLabel('People I mute can unmute themselves').check();
  });

  await step('screen share: the clinician shares, both others receive it as a screen tile', async () => {
    await role(clin.page, 'Share screen').click();
    await expectVisible(role(clin.page, 'Stop sharing'), 10000);
    for (const p of [pat, par]) {
      await expectVisible(tile(p.page, "Dr Rivera's screen"), 15000);
      await waitDecoding(p.page, 3, 15000, `${p.who} with the screen`);
    }
    await shot(pat.page, 'screen-share', { wait: 1500 });
    await role(clin.page, 'Stop sharing').click();
    for (const p of [pat, par]) await tile(p.page, "Dr Rivera's screen").waitFor({ state: 'detached', timeout: 15000 });
  }, { timeout: 60000 });

  let reconnectMs = null;
  await step('reconnect: the partner\'s network drops; the client is back within 5 s and video flows', async () => {
    await par.context.setOffline(true);
    await liveSays(par.page, 'Reconnecting', 5000);
    await sleep(1000);
    const t0 = Date.now();
    await par.context.setOffline(false);
    await liveSays(par.page, 'Reconnected', 5000);
    reconnectMs = Date.now() - t0;
    if (reconnectMs > 5000) throw new Error(`back after ${reconnectMs} ms`);
    // The server sends a dropped partner back to the waiting room; the
    // clinician sees that they were in the session and admits them again.
    if (await par.page.getByRole('heading', { name: "You're back in the waiting room" }).isVisible()) {
      const row = clin.page.getByRole('list', { name: /Waiting room/ }).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
      await expectVisible(row.getByText('Was in the session'));
      await row.getByRole('button', { name: 'Admit', exact: true }).click();
    }
    await waitDecoding(par.page, 2, 15000, 'partner after reconnecting');
    await waitDecoding(clin.page, 2, 15000, 'clinician after the partner reconnected');
    // Attendance: the drop is one short gap in Sam's presence, not a long one.
    const report = await api(server, 'GET', `/v1/attendance/sessions/${server.session}`);
    if (report.status !== 200) throw new Error(`attendance: HTTP ${report.status}`);
    const sam = report.json.participants.find((x) => x.participant_id === 'demo-partner');
    const spans = (sam ? sam.intervals : []).map((x) => [Date.parse(x.start), Date.parse(x.end)]).sort((a, b) => a[0] - b[0]);
    let gap = 0;
    for (let i = 1; i < spans.length; i += 1) gap += Math.max(0, spans[i][0] - spans[i - 1][1]);
    if (spans.length < 2 || gap > 10000) throw new Error(`Sam's presence around the drop: ${JSON.stringify(sam && sam.intervals)}`);
    return `back ${reconnectMs} ms after the network returned; attendance gap ${(gap / 1000).toFixed(1)} s`;
  }, { timeout: 45000 });

  await step('remove: the partner is removed, told so, and cannot get back in', async () => {
    const row = panel(clin.page).getByRole('listitem').filter({ hasText: 'Sam Morgan' });
    await row.getByRole('button', { name: 'Remove', exact: true }).click();
    const dialog = clin.page.getByRole('dialog', { name: 'Remove Sam Morgan?' });
    await expectVisible(dialog);
    await dialog.getByRole('button', { name: 'Remove', exact: true }).click();
    await expectVisible(par.page.getByRole('heading', { name: "You've been removed from the session" }));
    await tile(clin.page, 'Sam Morgan').waitFor({ state: 'detached', timeout: 10000 });
    await sleep(1500);
    if ((await par.page.getByText('Reconnecting').count()) > 0) throw new Error('the removed page tries to reconnect');
    await par.page.reload();
    await expectVisible(par.page.getByText('Your connection looks good'), 15000);
    await attest(par.page, 'NJ');
    await role(par.page, 'Join session').click();
    await expectVisible(par.page.getByRole('heading', { name: "You can't rejoin this session" }));
    await shot(par.page, 'removed-360', { wait: 300 });
  }, { timeout: 45000 });

  await step('leave, rejoin, then End session: everyone is told the session ended', async () => {
    await toolbar(pat.page).getByRole('button', { name: 'Leave', exact: true }).click();
    await expectVisible(pat.page.getByRole('heading', { name: "You've left the session" }));
    await tile(clin.page, 'Alex Morgan').waitFor({ state: 'detached', timeout: 10000 });
    await role(pat.page, 'Rejoin').click();
    await expectVisible(pat.page.getByText('Your connection looks good'), 15000);
    await attest(pat.page, 'NY');
    await role(pat.page, 'Join session').click();
    const list = clin.page.getByRole('list', { name: /Waiting room/ });
    await list.getByRole('listitem').filter({ hasText: 'Alex Morgan' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await expectVisible(tile(pat.page, 'Dr Rivera'));
    await panel(clin.page).getByRole('button', { name: 'End session', exact: true }).click();
    const dialog = clin.page.getByRole('dialog', { name: 'End the session for everyone?' });
    await dialog.getByRole('button', { name: 'End session', exact: true }).click();
    for (const p of [clin, pat]) await expectVisible(p.page.getByRole('heading', { name: 'The session has ended' }));
    await shot(pat.page, 'ended', { wait: 300 });
    await sleep(1500);
    for (const p of [clin, pat]) {
      if ((await p.page.getByText('Reconnecting').count()) > 0) throw new Error(`${p.who} tries to reconnect after the end`);
    }
  }, { timeout: 60000 });

  await step('denied links: foreign (token_invalid), ended, too early (local time), expired, cancelled', async () => {
    // A foreign link: the signature altered.
    const url = new URL(server.links.clinician.url);
    const token = url.hash.slice(3);
    const sig = token.split('.')[2];
    const flipped = `${token.split('.').slice(0, 2).join('.')}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    const bad = await open('foreign link', `${url.origin}${url.pathname}#t=${flipped}`);
    await role(bad.page, 'Join session').click();
    await expectVisible(bad.page.getByRole('heading', { name: "This link doesn't work" }));
    await shot(bad.page, 'denied-invalid', { wait: 300 });
    // The ended session's link.
    await bad.page.goto(server.links.clinician.url);
    await bad.page.reload();
    await role(bad.page, 'Join session').click();
    await expectVisible(bad.page.getByRole('heading', { name: 'This session has ended' }));
    await bad.context.close();

    // A session in two hours: its link is not open yet.
    const startsAt = new Date(Date.now() + 2 * 3600 * 1000);
    startsAt.setUTCSeconds(0, 0);
    const created = await api(server, 'POST', '/v1/sessions', {
      title: 'Later session', kind: 'couple',
      starts_at: startsAt.toISOString(), ends_at: new Date(startsAt.getTime() + 50 * 60000).toISOString(),
      timezone: 'America/New_York',
      clinician: { id: 'clin-2', name: 'Dr Rivera' },
      participants: [{ id: 'pat-2', name: 'Alex Morgan', role: 'patient' }, { id: 'par-2', name: 'Sam Morgan', role: 'partner' }],
    });
    if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
    const invites = await api(server, 'POST', `/v1/sessions/${created.json.id}/invites`);
    const link = invites.json.invites.find((i) => i.participant_id === 'pat-2').url;
    const early = await open('too early', link, { timezoneId: 'America/Los_Angeles' });
    await attest(early.page, 'CA');
    await role(early.page, 'Join session').click();
    await expectVisible(early.page.getByRole('heading', { name: "It's a little early" }));
    const text = await early.page.locator('#message-text').textContent();
    // The link opens 15 minutes before the start, shown in Los Angeles time.
    const opens = new Date(startsAt.getTime() - 15 * 60000);
    const expected = opens.toLocaleTimeString('en-US', { timeZone: 'America/Los_Angeles', hour: 'numeric', minute: '2-digit' });
    if (!text.includes(expected)) throw new Error(`"${text}" does not say ${expected} (Los Angeles time)`);
    await shot(early.page, 'denied-too-early', { wait: 300 });
    // An expired link: the server's own key signs a link for this session
    // whose window has closed (as an old link would be), so that only the
    // window check refuses it.
    const now = Math.floor(Date.now() / 1000);
    const expired = signInvite(path.join(tmp, 'data', 'signing-key.pem'), {
      sub: 'pat-2', sid: created.json.id, role: 'patient', nbf: now - 3 * 3600, exp: now - 3600,
      iat: now - 4 * 3600, jti: crypto.randomUUID(), aud: 'tandem-invite',
    });
    await early.page.goto(`${new URL(link).origin}/j/${created.json.id}#t=${expired}`);
    await early.page.reload();
    await attest(early.page, 'CA');
    await role(early.page, 'Join session').click();
    await expectVisible(early.page.getByRole('heading', { name: 'This link has expired' }));
    await shot(early.page, 'denied-expired', { wait: 300 });
    await early.page.goto(link);
    await early.page.reload();
    // Cancelled.
    const cancel = await api(server, 'DELETE', `/v1/sessions/${created.json.id}`);
    if (cancel.status >= 300) throw new Error(`cancel: ${cancel.status}`);
    await attest(early.page, 'CA');
    await role(early.page, 'Join session').click();
    await expectVisible(early.page.getByRole('heading', { name: 'This session was cancelled' }));
    await early.context.close();
    return `too early: "${text}"`;
  }, { timeout: 60000 });

  await step('group session: the clinician sends a couple to a Breakout from the panel; the couple sees it', async () => {
    const now = new Date();
    const created = await api(server, 'POST', '/v1/sessions', {
      title: 'Group session', kind: 'group',
      starts_at: now.toISOString(), ends_at: new Date(now.getTime() + 60 * 60000).toISOString(),
      timezone: 'America/New_York',
      clinician: { id: 'clin-g', name: 'Dr Rivera' },
      participants: [
        { id: 'g-a1', name: 'Jo Park', role: 'patient', household: 'h1' },
        { id: 'g-b1', name: 'Lee Chen', role: 'patient', household: 'h2' },
      ],
      settings: { auto_admit: true },
    });
    if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
    const invites = (await api(server, 'POST', `/v1/sessions/${created.json.id}/invites`)).json.invites;
    const url = (id) => invites.find((i) => i.participant_id === id).url;
    const gc = await open('group clinician', url('clin-g'));
    await role(gc.page, 'Join session').click();
    await expectVisible(panel(gc.page));
    const ga = await open('group patient', url('g-a1'));
    await attest(ga.page, 'NY');
    await role(ga.page, 'Join session').click();
    await expectVisible(tile(ga.page, 'Dr Rivera'), 15000);
    // The panel lists the couple; no household id to type.
    const couple = gc.page.locator('#people-list li.couple[data-household="h1"]');
    await expectVisible(couple.getByText('Couple h1'), 15000);
    await couple.getByRole('button', { name: 'Breakout', exact: true }).click();
    await expectVisible(couple.getByRole('button', { name: 'End breakout', exact: true }));
    // The breakout banner, not the live region, which may say the same
    // words at the same moment.
    const banner = ga.page.locator('#breakout-where', { hasText: 'You and your partner are in a private breakout' });
    await expectVisible(banner);
    await couple.getByRole('button', { name: 'End breakout', exact: true }).click();
    await banner.waitFor({ state: 'hidden', timeout: 10000 });
    await gc.context.close();
    await ga.context.close();
  }, { timeout: 45000 });

  await step('accessibility: every visible button has a name; no CSP violations or page errors', async () => {
    const p = await open('a11y', server.links.patient.url, { width: 360, height: 700 });
    const unnamed = await p.page.evaluate(() => [...document.querySelectorAll('button')]
      .filter((b) => b.offsetParent !== null && !(b.textContent.trim() || b.getAttribute('aria-label')))
      .map((b) => b.outerHTML));
    if (unnamed.length) throw new Error(`buttons without a name: ${unnamed.join(' ')}`);
    const width = await p.page.evaluate(() => document.documentElement.scrollWidth);
    if (width > 360) throw new Error(`the pre-call page is ${width} px wide at 360 px`);
    // Keyboard: Tab reaches the controls, each with a visible focus ring.
    await expectVisible(p.page.getByText('Your connection looks good'), 15000);
    const reached = [];
    for (let i = 0; i < 14; i += 1) {
      await p.page.keyboard.press('Tab');
      const f = await p.page.evaluate(() => {
        const e = document.activeElement;
        const cs = getComputedStyle(e);
        return { what: e.id || e.name || e.tagName, label: e.labels?.[0]?.textContent.trim() || e.textContent.trim().slice(0, 30), ring: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2 };
      });
      if (f.what === 'BODY') break; // past the last control
      if (!f.ring) throw new Error(`no visible focus on ${JSON.stringify(f)}`);
      reached.push(f.label || f.what);
    }
    for (const want of ['Play test sound', 'Which state are you in right now?', 'Join session']) {
      if (!reached.includes(want)) throw new Error(`Tab did not reach "${want}": ${reached.join(', ')}`);
    }
    await p.context.close();
    if (pageProblems.length) throw new Error(pageProblems.join('\n'));
    return `Tab order: ${reached.join(' → ')}`;
  });
} catch (e) {
  fail(e);
  if (e && e.exit === 2) process.exitCode = 2;
} finally {
  if (browser) await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
  if (server) {
    server.child.removeAllListeners('exit');
    server.child.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.child.once('exit', r)), sleep(5000)]);
    if (steps.failures) log(`server log (last lines):\n  ${server.serverLog.slice(-40).join('\n  ')}`);
  }
  if (process.env.KEEP_TMP !== '1') fs.rmSync(tmp, { recursive: true, force: true });
}

process.exit(process.exitCode || (summary('Browser client checks') ? 1 : 0));
