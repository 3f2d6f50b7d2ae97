// A patient whose network changes mid-call (a move from Wi-Fi to cellular),
// in the real browser client, for tests/integration/networks.rs.
//
// Headless Chromium opens the patient's link, answers the attestation and
// joins (the session admits rostered people once the clinician is in),
// waits until the clinician's video decodes, and prints `READY`. The Rust
// test then gives the client's network another address and writes `MOVED`
// on stdin. The script measures how long it takes until the video decodes
// again, checks that the person never saw the waiting room or an error
// screen meanwhile, and prints `RESULT {json}`.
//
//   node roam.mjs --url JOIN_URL --spki BASE64 [--resolve IP]

import { chromium } from 'playwright-core';
import { parseArgs } from 'node:util';
import readline from 'node:readline';
import { CHROMIUM, chromiumArgs, decodedInPage, log, observePeerConnections, openPage, sleep } from './server.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    spki: { type: 'string' },
    resolve: { type: 'string' },
  },
});
if (!args.url || !args.spki) {
  console.error('roam.mjs: --url and --spki are required');
  process.exit(2);
}

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

/** Resolves once the clinician's video has decoded more frames in each of
 * `windows` consecutive quarter seconds; rejects after `ms`. */
async function decoding(page, windows, ms) {
  const deadline = Date.now() + ms;
  const total = async () => Object.values(await page.evaluate(decodedInPage)).reduce((a, b) => a + b, 0);
  let last = await total();
  let run = 0;
  while (Date.now() < deadline) {
    await sleep(250);
    const now = await total();
    run = now > last ? run + 1 : 0;
    if (process.env.ROAM_DEBUG) log(`decoded ${now} ${JSON.stringify(await page.evaluate(() => [(window.__pcs || []).map((pc) => pc.connectionState), document.getElementById('live')?.textContent, [...document.querySelectorAll('h1,h2')].filter((h) => h.offsetParent).map((h) => h.textContent)]))}`);
    last = now;
    if (run >= windows) return;
  }
  throw new Error(`the clinician's video did not decode within ${ms} ms`);
}

let browser;
let exitCode = 0;
try {
  const flags = chromiumArgs(args.spki, { loopback: false });
  if (args.resolve) flags.push(`--host-resolver-rules=MAP ${new URL(args.url).hostname} ${args.resolve}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: flags });
  const context = await browser.newContext({ locale: 'en-US', ignoreHTTPSErrors: false });
  await context.addInitScript(observePeerConnections);
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e}`));
  page.on('console', (m) => log(`page console.${m.type()}: ${m.text()}`));
  const response = await openPage(page, args.url);
  if (!response || response.status() !== 200) throw new Error(`join page: HTTP ${response && response.status()}`);

  await page.getByLabel('Which state are you in right now?').selectOption('NY');
  await page.getByLabel('At home').check();
  await page.getByLabel("Yes, it's private").check();
  await page.getByRole('button', { name: 'Join session', exact: true }).click();
  await page.getByRole('toolbar', { name: 'Call controls' }).waitFor({ timeout: 20000 });
  await decoding(page, 4, 20000);
  log('in the call, the clinician\'s video decoding');

  // Anything but the call screen from now on is a failure the person sees.
  const screens = [];
  const watch = setInterval(async () => {
    try {
      const shown = await page.evaluate(() => [...document.querySelectorAll('h1, h2')]
        .filter((h) => h.offsetParent)
        .map((h) => h.textContent));
      for (const heading of shown) if (!screens.includes(heading)) screens.push(heading);
    } catch {
      // between screens
    }
  }, 100);

  console.log('READY');
  await nextLine();
  const moved = Date.now();
  log('the network changed');
  // The old path may still deliver what was in flight: wait for a stall
  // first (at most 2 s), then for a second of steady decoding.
  const stallUntil = Date.now() + 2000;
  let before = -1;
  while (Date.now() < stallUntil) {
    const now = Object.values(await page.evaluate(decodedInPage)).reduce((a, b) => a + b, 0);
    if (now === before) break;
    before = now;
    await sleep(150);
  }
  await decoding(page, 4, 30000);
  const recovered = Date.now() - moved - 1000; // the second of steady decoding
  clearInterval(watch);
  const callStill = await page.getByRole('toolbar', { name: 'Call controls' }).isVisible();
  console.log(`RESULT ${JSON.stringify({ recovered_ms: recovered, screens, call_still_shown: callStill })}`);
  log(`media back ${recovered} ms after the move; headings seen: ${JSON.stringify(screens)}`);
  await nextLine();
} catch (e) {
  exitCode = 1;
  console.log(`FAILED ${JSON.stringify({ error: String(e && e.message ? e.message : e) })}`);
  log(`FAILED: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
}
process.exit(exitCode);
