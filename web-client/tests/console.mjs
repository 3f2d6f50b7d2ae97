// The staff console, end to end: real Tandem servers (real TLS) and
// headless Chromium (Debian's, driven by playwright-core).
//
// Server A is `tandem serve` with the console's second factor on and a
// 30-second idle timeout; its staff accounts are made with `tandem staff
// add`. Server B is `tandem demo` (its admin signs in with the printed
// one-time link and is also the demo session's clinician).
//
//   TANDEM_BIN=target/debug/tandem node web-client/tests/console.mjs
//
// Covers: set-up link and sign-in with TOTP; an admin creating an API key;
// CSRF refusal; compliance downloading a weekly CSV and the audit row it
// leaves; lock-out; idle logoff; a clinician starting a session from
// Today and seeing a patient appear in the waiting count. With
// SCREENSHOTS_DIR set, screenshots of every page at 1280 and 360 px.
// Exits 0 when every step passed, 1 otherwise, 2 when it cannot start.

import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import {
  BIN, CHROMIUM, SHOTS, chromiumArgs, log, sleep, spkiHash, startServer, stepper, stopServer, watchdog,
} from './server.mjs';

// RFC 6238 (SHA-1, 6 digits, 30 s) for the test's authenticator app.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}
function totp(secret, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = crypto.createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** A request to a server with its development CA: { status, json, text }. */
function request(ca, url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('error', reject);
    if (body) req.end(body); else req.end();
  });
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-console-'));
  const { step, fail, summary } = stepper();
  let b;
  let a;
  let browser;
  const cleanup = async () => {
    if (browser) await browser.close().catch(() => {});
    if (a) { a.kill('SIGTERM'); }
    await stopServer(b);
    if (!process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  };
  watchdog(420000, cleanup);
  try {
    b = await startServer(tmp);
  } catch (e) {
    log(`cannot start the demo: ${e.message}`);
    process.exit(e.exit || 2);
  }
  const consoleLine = b.stdout.find((l) => /^console\s+https:/.test(l));
  const certs = path.join(tmp, 'certs');
  const ca = fs.readFileSync(path.join(certs, 'dev-ca.pem'));

  // Server A: TOTP on, 30 s idle timeout.
  const port = await freePort();
  const baseA = `https://localhost:${port}`;
  const config = path.join(tmp, 'a.toml');
  fs.writeFileSync(config, [
    `public_url = "${baseA}"`,
    `data_dir = "${path.join(tmp, 'a-data')}"`,
    '[server]', `listen = "127.0.0.1:${port}"`,
    '[tls]', `cert_file = "${path.join(certs, 'cert.pem')}"`, `key_file = "${path.join(certs, 'key.pem')}"`,
    '[media]', 'bind_ip = "127.0.0.1"', 'udp_port = 0', 'tcp_port = 0',
    '[sessions]', 'default_timezone = "America/New_York"',
    '[console]', 'require_totp = true', 'idle_timeout_minutes = 0.5',
    '[log]', 'filter = "warn"',
  ].join('\n'));
  // TANDEM_* variables are configuration to the server: not TANDEM_BIN.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TANDEM_')));
  const staff = (...args) => execFileSync(BIN, ['staff', ...args, '--config', config], { encoding: 'utf8', env });
  const setupLink = (out) => out.match(/Set-up link[^:]*: (\S+)/)[1];
  const people = {};
  a = spawn(BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
  const aLog = [];
  a.stderr.on('data', (d) => aLog.push(String(d)));
  for (let i = 0; ; i += 1) {
    try { if ((await request(ca, `${baseA}/healthz`)).status === 200) break; } catch { /* not yet */ }
    if (i > 100) { log(`server A did not start:\n${aLog.join('')}`); await cleanup(); process.exit(2); }
    await sleep(200);
  }
  for (const [who, name, roles, roster] of [
    ['admin', 'Ada Admin', 'admin', null],
    ['compliance', 'Cole Compliance', 'compliance', null],
    ['scheduler', 'Sky Scheduler', 'scheduler', null],
    ['clinician', 'Dr Cruz', 'clinician', 'dr-cruz'],
  ]) {
    const email = `${who}@clinic.test`;
    const out = staff('add', '--email', email, '--name', name, '--role', roles, ...(roster ? ['--roster-id', roster] : []));
    people[who] = { email, password: `${who} password 1234`, link: setupLink(out) };
  }

  browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs(spkiHash(path.join(certs, 'key.pem'))) });
  const expectVisible = (locator, timeout = 10000) => locator.first().waitFor({ state: 'visible', timeout });
  const button = (page, name) => page.getByRole('button', { name, exact: true });
  const shots = [];
  async function shoot(page, name) {
    if (!SHOTS) return;
    fs.mkdirSync(SHOTS, { recursive: true });
    for (const width of [1280, 360]) {
      await page.setViewportSize({ width, height: width === 360 ? 740 : 800 });
      await page.evaluate(() => window.scrollTo(0, 0));
      await sleep(150);
      const file = path.join(SHOTS, `console-${name}-${width}.png`);
      // A phone's whole page, cut at 1500 px (the files stay small).
      const height = await page.evaluate(() => document.documentElement.scrollHeight);
      await page.screenshot(width === 360
        ? { path: file, fullPage: true, clip: { x: 0, y: 0, width, height: Math.min(height, 1500) } }
        : { path: file });
      shots.push(file);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  async function setUp(page, who) {
    await page.goto(people[who].link);
    await page.getByLabel('New password').fill(people[who].password);
    await button(page, 'Set password').click();
    await expectVisible(page.getByRole('heading', { name: 'Account ready' }));
    people[who].secret = (await page.locator('#totp-secret').textContent()).trim();
  }

  async function signIn(page, who, heading, { keyboard = false } = {}) {
    await page.goto(`${baseA}/console/`);
    if (keyboard) {
      // The page puts the focus in "Email"; Tab, typing and Enter do the rest.
      await expectVisible(page.getByLabel('Email'));
      await page.keyboard.type(people[who].email);
      await page.keyboard.press('Tab');
      await page.keyboard.type(people[who].password);
      await page.keyboard.press('Enter');
      await expectVisible(page.getByLabel('Authentication code'));
      await page.keyboard.type(totp(people[who].secret));
      await page.keyboard.press('Enter');
      await expectVisible(page.getByRole('heading', { name: heading, exact: true }));
      return;
    }
    await page.getByLabel('Email').fill(people[who].email);
    await page.getByLabel('Password').fill(people[who].password);
    await button(page, 'Sign in').click();
    const code = page.getByLabel('Authentication code');
    await expectVisible(code);
    await code.fill(totp(people[who].secret));
    await button(page, 'Verify').click();
    await expectVisible(page.getByRole('heading', { name: heading, exact: true }));
  }

  const admin = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  let apiKey;

  await step('set-up link: a password, then the authenticator key shown once', async () => {
    await setUp(admin, 'admin');
    if (!/^[A-Z2-7]{16,}$/.test(people.admin.secret)) throw new Error(`no TOTP secret: ${people.admin.secret}`);
    await admin.goto(people.admin.link);
    await admin.getByLabel('New password').fill('another password 123');
    await button(admin, 'Set password').click();
    await expectVisible(admin.getByText('This link is not valid'));
  });

  await step('sign-in with email, password and TOTP code', async () => {
    await shootSignIn(admin);
    await signIn(admin, 'admin', 'Today');
  });

  async function shootSignIn(page) {
    await page.goto(`${baseA}/console/`);
    await expectVisible(page.getByLabel('Email'));
    await shoot(page, 'sign-in');
  }

  await step('an admin creates an API key (the secret shown once, and it works)', async () => {
    await admin.getByRole('link', { name: 'API keys' }).click();
    await expectVisible(admin.getByRole('heading', { name: 'API keys', exact: true }));
    await admin.getByLabel('Label').fill('EHR scheduler');
    await admin.getByLabel('Role').selectOption('scheduler');
    await button(admin, 'Create API key').click();
    apiKey = (await admin.locator('#new-key').textContent()).trim();
    if (!apiKey.startsWith('tdm_')) throw new Error(`no key shown: ${apiKey}`);
    const listed = await request(ca, `${baseA}/v1/sessions`, { headers: { Authorization: `Bearer ${apiKey}` } });
    if (listed.status !== 200) throw new Error(`the new key got ${listed.status}`);
    await expectVisible(admin.getByRole('cell', { name: 'EHR scheduler' }));
    await shoot(admin, 'api-keys');
    return apiKey.slice(0, 8);
  });

  await step('CSRF: a cookie without the token is refused (403 csrf); with it, the request goes through', async () => {
    const out = await admin.evaluate(async () => {
      const post = (url, headers = {}) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ label: 'x', role: 'compliance' }) })
        .then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }));
      const me = await (await fetch('/console/api/session')).json();
      return {
        v1: await post('/v1/sessions'),
        console: await post('/console/api/api-keys'),
        wrong: await post('/console/api/api-keys', { 'X-CSRF-Token': 'nope' }),
        right: await post('/console/api/api-keys', { 'X-CSRF-Token': me.csrf_token }),
      };
    });
    for (const k of ['v1', 'console', 'wrong']) {
      if (out[k].status !== 403 || out[k].body?.error?.code !== 'csrf') throw new Error(`${k}: ${JSON.stringify(out[k])}`);
    }
    if (out.right.status !== 201) throw new Error(`with the token: ${JSON.stringify(out.right)}`);
  });

  await step('the Staff page lists accounts and the sign-in audit', async () => {
    await admin.getByRole('link', { name: 'Staff' }).click();
    await expectVisible(admin.getByRole('heading', { name: 'Staff', exact: true }));
    await expectVisible(admin.getByRole('cell', { name: 'compliance@clinic.test' }));
    await expectVisible(admin.getByRole('cell', { name: 'signed in' }));
    await shoot(admin, 'staff');
    await admin.getByRole('link', { name: 'Ledger' }).click();
    await button(admin, 'Verify now').click();
    await expectVisible(admin.getByText('The chain is intact.'));
    await shoot(admin, 'ledger');
  });

  await step('a scheduler books a weekly series from suggested slots; a clash is told in words', async () => {
    const auth = { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' };
    const week = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((day) => ({ day, start: '08:00', end: '20:00' }));
    for (const [id, name, role] of [['dr-cruz', 'Dr Cruz', 'clinician'], ['pat-1', 'Alex Morgan', 'patient'], ['par-1', 'Sam Morgan', 'partner']]) {
      const put = await request(ca, `${baseA}/v1/people/${id}`, { method: 'PUT', headers: auth, body: JSON.stringify({ name, role, timezone: 'America/New_York' }) });
      const avail = await request(ca, `${baseA}/v1/people/${id}/availability`, { method: 'PUT', headers: auth, body: JSON.stringify({ timezone: 'America/New_York', weekly: week }) });
      if (put.status >= 300 || avail.status !== 200) throw new Error(`people: ${put.text} ${avail.text}`);
    }
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await setUp(page, 'scheduler');
    await signIn(page, 'scheduler', 'Today');
    await page.getByRole('link', { name: 'Schedule' }).click();
    await expectVisible(page.getByRole('heading', { name: 'Schedule', exact: true }));
    const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
    await page.getByLabel('Title').fill('Morgan couple therapy');
    await page.getByLabel('People (ids, comma-separated)').fill('dr-cruz, pat-1, par-1');
    await page.getByLabel('Search from').fill(tomorrow);
    await button(page, 'Find common slots').click();
    const first = page.getByRole('radio').first();
    await expectVisible(first);
    const slot = await page.locator('label[for="slot-0"]').textContent();
    await page.getByLabel('Repeat weekly').check();
    await page.getByLabel('Number of weeks').fill('3');
    await button(page, 'Book').click();
    await expectVisible(page.getByText('Booked a weekly series of 3 sessions'));
    await shoot(page, 'schedule');
    // The same slot again, once: Dr Cruz is taken then.
    await page.getByLabel('Repeat weekly').uncheck();
    await button(page, 'Book').click();
    await expectVisible(page.locator('#schedule-error').filter({ hasText: 'Dr Cruz already has a session at' }));
    await page.context().close();
    return slot;
  });

  const compContext = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const comp = await compContext.newPage();

  await step('compliance (by keyboard) downloads a weekly CSV; the export audit names the staff account', async () => {
    await setUp(comp, 'compliance');
    await signIn(comp, 'compliance', 'Attendance', { keyboard: true });
    // By keyboard: Tab to "Show weekly report", Enter.
    await comp.getByLabel('Week').focus();
    await comp.keyboard.press('Tab');
    await comp.keyboard.press('Enter');
    await expectVisible(comp.locator('#part2-notice'));
    const [download] = await Promise.all([comp.waitForEvent('download'), button(comp, 'Download CSV').click()]);
    const file = path.join(tmp, 'weekly.csv');
    await download.saveAs(file);
    const csv = fs.readFileSync(file, 'utf8');
    if (!csv.includes('42 CFR part 2')) throw new Error(`no Part 2 notice in the CSV: ${csv.slice(0, 200)}`);
    const audit = await request(ca, `${baseA}/v1/audit/exports`, { headers: { Authorization: `Bearer ${apiKey}` } });
    // The scheduler key may not read the audit; ask as the admin page does.
    const rows = audit.status === 200 ? audit.json.exports : await admin.evaluate(async () => (await (await fetch('/v1/audit/exports')).json()).exports);
    const row = rows.find((r) => r.actor === 'staff:compliance@clinic.test' && r.format === 'csv');
    if (!row) throw new Error(`no audit row for the download: ${JSON.stringify(rows)}`);
    // A date range (tomorrow: the series booked above), then one session, as JSON.
    const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
    await comp.getByLabel('From').fill(tomorrow);
    await comp.getByLabel('To').fill(tomorrow);
    await button(comp, 'Show sessions').click();
    await expectVisible(comp.getByRole('heading', { name: '1 session', exact: true }));
    await expectVisible(comp.getByRole('cell', { name: 'pat-1' }));
    await comp.getByRole('button', { name: /^Show only Morgan couple therapy/ }).click();
    await expectVisible(comp.getByRole('heading', { name: 'One session', exact: true }));
    const [json] = await Promise.all([comp.waitForEvent('download'), button(comp, 'Download JSON').click()]);
    const report = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
    if (!report.session || !report.notice) throw new Error(`not a session report with the notice: ${JSON.stringify(report).slice(0, 200)}`);
    await button(comp, 'Show weekly report').click();
    await expectVisible(comp.getByRole('heading', { name: /^Week / }));
    await shoot(comp, 'attendance');
    return `${row.what} ${row.format} by ${row.actor}; then a session's JSON`;
  });

  await step('idle logoff: a warning, then signed out after 30 s without activity', async () => {
    await expectVisible(comp.getByText(/You will be signed out/), 40000);
    await expectVisible(comp.getByRole('button', { name: 'Stay signed in' }));
    await expectVisible(comp.getByText(/signed out after 30 seconds without activity/), 30000);
    await expectVisible(comp.getByRole('heading', { name: 'Sign in' }));
    const status = await comp.evaluate(async () => (await fetch('/v1/attendance/verify')).status);
    if (status !== 401) throw new Error(`the cookie still works after the logoff: ${status}`);
  }, { timeout: 80000 });

  await step('lock-out after five wrong passwords, with a clear message; the right one is refused too', async () => {
    const page = await (await browser.newContext()).newPage();
    await setUp(page, 'clinician');
    await page.goto(`${baseA}/console/`);
    for (let i = 0; i < 5; i += 1) {
      await page.getByLabel('Email').fill(people.clinician.email);
      await page.getByLabel('Password').fill(`wrong password ${i}`);
      await button(page, 'Sign in').click();
      await expectVisible(page.locator('#sign-in-error').filter({ hasText: i < 4 ? 'not right' : 'locked' }));
    }
    await page.getByLabel('Password').fill(people.clinician.password);
    await button(page, 'Sign in').click();
    await expectVisible(page.locator('#sign-in-error').filter({ hasText: 'this account is locked for 15 more minutes' }));
    await page.context().close();
  });

  await step('a clinician starts the session from Today and sees the patient in the waiting count', async () => {
    if (!consoleLine) throw new Error('the demo printed no console line');
    const url = consoleLine.split(/\s+/)[1];
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: b.base });
    const page = await context.newPage();
    await page.goto(url);
    await expectVisible(page.getByRole('heading', { name: 'Today', exact: true }));
    const card = page.locator(`[data-session="${b.session}"]`);
    await expectVisible(card.getByText('Waiting: 0'));
    const [room] = await Promise.all([context.waitForEvent('page'), card.getByRole('button', { name: 'Start session' }).click()]);
    await room.waitForURL(/\/j\//, { timeout: 10000 });
    await expectVisible(room.getByRole('heading', { name: 'Get ready for your session' }), 15000);
    // The pre-call check takes its time on a busy machine: Join is
    // clicked once it is enabled.
    await room.getByRole('button', { name: 'Join session', exact: true }).click({ timeout: 45000 });
    await expectVisible(card.getByText('In the room: 1'), 20000);
    // Copy link for the patient, then the patient opens it.
    await card.getByRole('listitem').filter({ hasText: 'Alex Morgan' }).getByRole('button', { name: 'Copy link' }).click();
    await expectVisible(page.getByText('Link for Alex Morgan copied.'));
    const link = await page.evaluate(() => navigator.clipboard.readText());
    if (!link.includes('/j/')) throw new Error(`the clipboard holds ${link}`);
    const patient = await (await browser.newContext()).newPage();
    await patient.goto(link);
    await expectVisible(patient.getByLabel('Which state are you in right now?'), 20000);
    await patient.getByLabel('Which state are you in right now?').selectOption('NY');
    await patient.getByLabel('At home').check();
    await patient.getByLabel("Yes, it's private").check();
    await patient.getByRole('button', { name: 'Join session', exact: true }).click({ timeout: 45000 });
    const t0 = Date.now();
    await expectVisible(card.getByText('Waiting: 1'), 15000);
    await expectVisible(card.getByText(/Waiting: Alex Morgan/));
    await page.bringToFront();
    await shoot(page, 'today');
    await patient.context().close();
    await room.close();
    return `waiting count shown ${Date.now() - t0} ms after the patient joined`;
  }, { timeout: 150000 });

  await cleanup();
  if (shots.length) log(`screenshots: ${shots.join(', ')}`);
  process.exit(summary('Staff console') ? 1 : 0);
}

main().catch((e) => { log(`FAIL: ${e.stack || e}`); process.exit(1); });
