// The clinician of a group room, in Chromium, for tests/integration/group_room.rs.
//
// Headless Chromium (playwright-core, Debian's /usr/bin/chromium) opens the
// real join page of a running test server with the clinician's link and
// joins. The room's other people are the Rust test's own WebRTC peers; the
// Rust side drives this page one command at a time on stdin and reads one
// `RESULT {json}` line on stdout per command (`FAILED {json}` on failure,
// then exit 1). Progress goes to stderr.
//
//   node group.mjs --url https://localhost:PORT --session ID --token JWT --spki BASE64
//
// Commands (one a line):
//   couples N                 the panel lists N couples of two: their households and names
//   breakout H MINUTES        Breakout for couple H, on their own, for MINUTES
//   message TEXT…             Message to breakouts
//   state H                   couple H's state line in the panel
//   returned H MS             waits up to MS for couple H to be back in the group by itself
//   hand NAME                 waits for NAME's raised hand in the panel and its announcement
//   spotlight NAME            Spotlight on NAME (for everyone)
//   rates MS                  inbound video kbit/s per participant over MS, from getStats
//   shot NAME WIDTH HEIGHT    a screenshot at that size into $SCREENSHOTS_DIR (if set)
//   size WIDTH HEIGHT         the window's size
//   panelshot NAME            a screenshot of the clinician panel
//   quit
//
// TLS: Chromium accepts exactly the test server's key (--spki), as call.mjs.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import { CHROMIUM, SHOTS, chromiumArgs, log, observePeerConnections, sleep } from './server.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    session: { type: 'string' },
    token: { type: 'string' },
    spki: { type: 'string' },
  },
});
for (const name of ['url', 'session', 'token', 'spki']) {
  if (!args[name]) {
    console.error(`group.mjs: --${name} is required`);
    process.exit(2);
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(args.spki) });
let exiting = false;
async function quit(code) {
  if (exiting) return;
  exiting = true;
  await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
  process.exit(code);
}
process.on('SIGTERM', () => quit(1));
// The last resort: the Rust side has its own timeouts well before.
setTimeout(() => { log('group.mjs: 5 minutes passed'); quit(1); }, 300000).unref();

const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'America/New_York' });
await context.addInitScript(observePeerConnections);
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e}`));
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log(`console.${m.type()}: ${m.text()}`); });

const panel = page.getByRole('complementary', { name: 'Clinician panel' });
const couple = (h) => page.locator(`#people-list li.couple[data-household="${h}"]`);
const stateOf = (h) => couple(h).locator('.couple-state');

/** Runs in the page: kbit/s of inbound video per stream id (the publisher) over `ms`. */
async function videoRates(ms) {
  const read = async () => {
    const out = {};
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed' || !pc.remoteDescription) continue;
      // mid -> msid stream (the publisher's participant id) from the server's offer.
      const streams = {};
      let mid = null;
      for (const line of pc.remoteDescription.sdp.split(/\r?\n/)) {
        if (line.startsWith('m=')) mid = null;
        else if (line.startsWith('a=mid:')) mid = line.slice(6);
        else if (line.startsWith('a=msid:') && mid != null) streams[mid] = line.slice(7).split(' ')[0];
      }
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && streams[s.mid]) {
          out[streams[s.mid]] = (out[streams[s.mid]] || 0) + (s.bytesReceived || 0);
        }
      });
    }
    return out;
  };
  const before = await read();
  await new Promise((r) => setTimeout(r, ms));
  const after = await read();
  const rates = {};
  for (const [id, bytes] of Object.entries(after)) rates[id] = Math.round(((bytes - (before[id] || 0)) * 8) / ms);
  return rates;
}

const commands = {
  async couples(n) {
    const want = Number(n);
    await page.waitForFunction((k) => {
      const rows = [...document.querySelectorAll('#people-list li.couple[data-household]')];
      return rows.length === k && rows.every((r) => r.querySelectorAll('li.person').length === 2);
    }, want, { timeout: 30000, polling: 200 });
    const couples = await page.evaluate(() => [...document.querySelectorAll('#people-list li.couple[data-household]')].map((r) => ({
      household: r.dataset.household,
      label: r.querySelector('.couple-head .person-name').textContent,
      members: [...r.querySelectorAll('li.person .person-name')].map((e) => e.textContent),
      buttons: [...r.querySelectorAll('.couple-head button')].map((b) => b.textContent),
    })));
    return { couples };
  },
  async breakout(h, minutes) {
    await page.getByLabel('Length in minutes (optional)').fill(minutes);
    await page.getByLabel('On their own').check();
    await couple(h).getByRole('button', { name: 'Breakout', exact: true }).click();
    await couple(h).getByRole('button', { name: 'End breakout', exact: true }).waitFor({ timeout: 10000 });
    await page.waitForFunction((hh) => document.querySelector(`#people-list li.couple[data-household="${hh}"] .couple-state`)?.textContent.includes('left'), h, { timeout: 10000, polling: 100 });
    return { state: await stateOf(h).textContent() };
  },
  async message(...words) {
    await page.getByLabel('Message for the couples in breakouts').fill(words.join(' '));
    await page.getByRole('button', { name: 'Message to breakouts', exact: true }).click();
    await page.waitForFunction(() => document.getElementById('breakout-text').value === '', null, { timeout: 5000 });
    return { sent: words.join(' ') };
  },
  async state(h) {
    return { state: await stateOf(h).textContent() };
  },
  async returned(h, ms) {
    const t0 = Date.now();
    await couple(h).getByRole('button', { name: 'Breakout', exact: true }).waitFor({ timeout: Number(ms) });
    return { after_ms: Date.now() - t0, state: await stateOf(h).textContent() };
  },
  async hand(...name) {
    const who = name.join(' ');
    const list = page.locator('#hands-list');
    await list.locator('li.person', { hasText: who }).waitFor({ timeout: 10000 });
    await page.waitForFunction((t) => document.getElementById('live').textContent.includes(t), `${who} raised their hand.`, { timeout: 10000, polling: 50 });
    return {
      hands: await list.locator('li.person .person-name').allTextContents(),
      lower: await list.getByRole('button', { name: 'Lower hand', exact: true }).count(),
    };
  },
  async spotlight(...name) {
    const who = name.join(' ');
    const row = page.locator('#people-list li.person', { has: page.locator('.person-name', { hasText: new RegExp(`^${who}$`) }) });
    await row.getByRole('button', { name: 'Spotlight', exact: true }).click();
    await row.locator('button[data-action="spotlight"][aria-pressed="true"]').waitFor({ timeout: 10000 });
    await page.locator('figure.tile.featured').waitFor({ timeout: 10000 });
    return { featured: await page.locator('figure.tile.featured .tile-name').textContent() };
  },
  async rates(ms) {
    return {
      kbps: await page.evaluate(videoRates, Number(ms)),
      active_speaker: await page.evaluate(() => document.querySelector('figure.tile.active-speaker')?.dataset.key || null),
    };
  },
  async shot(name, width, height) {
    await page.setViewportSize({ width: Number(width), height: Number(height) });
    await sleep(800);
    if (!SHOTS) return { skipped: 'SCREENSHOTS_DIR not set' };
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.evaluate(() => document.getElementById('live').classList.remove('show'));
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled' });
    return { shot: `${name}.png` };
  },
  async size(width, height) {
    await page.setViewportSize({ width: Number(width), height: Number(height) });
    await sleep(500);
    return { width: Number(width), height: Number(height) };
  },
  async panelshot(name) {
    if (!SHOTS) return { skipped: 'SCREENSHOTS_DIR not set' };
    fs.mkdirSync(SHOTS, { recursive: true });
    // The whole panel, not only what its scroll box shows.
    await page.evaluate(() => {
      document.getElementById('live').classList.remove('show');
      const p = document.getElementById('panel');
      p.style.maxHeight = 'none';
      p.style.overflow = 'visible';
    });
    await panel.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled' });
    await page.evaluate(() => {
      const p = document.getElementById('panel');
      p.style.maxHeight = '';
      p.style.overflow = '';
    });
    return { shot: `${name}.png` };
  },
  async quit() {
    return { problems };
  },
};

try {
  log(`opening the clinician's link`);
  const response = await page.goto(`${args.url}/j/${args.session}#t=${args.token}`, { waitUntil: 'load' });
  if (!response || response.status() !== 200) throw new Error(`HTTP ${response && response.status()}`);
  await page.getByRole('button', { name: 'Join session', exact: true }).click({ timeout: 20000 });
  await panel.waitFor({ state: 'visible', timeout: 20000 });
  console.log(`RESULT ${JSON.stringify({ step: 'joined' })}`);
} catch (e) {
  console.log(`FAILED ${JSON.stringify({ step: 'joined', error: String(e && e.message ? e.message : e) })}`);
  await quit(1);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [name, ...rest] = line.trim().split(/\s+/);
  if (!name) continue;
  const command = commands[name];
  try {
    if (!command) throw new Error(`unknown command ${name}`);
    log(`> ${line.trim()}`);
    const result = await command(...rest);
    console.log(`RESULT ${JSON.stringify({ step: name, ...result })}`);
    if (name === 'quit') break;
  } catch (e) {
    console.log(`FAILED ${JSON.stringify({ step: name, error: String(e && e.message ? e.message : e), problems })}`);
    await quit(1);
  }
}
await quit(problems.length ? 1 : 0);
