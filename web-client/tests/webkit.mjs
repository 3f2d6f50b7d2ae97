// The web client in WebKit's engine: Debian's WebKitGTK (MiniBrowser,
// driven by its WebKitWebDriver over classic W3C WebDriver with
// selenium-webdriver), a patient against this build's `tandem demo` over
// real TLS, and their clinician in Chromium (playwright-core).
//
//   TANDEM_BIN=target/debug/tandem xvfb-run -a node web-client/tests/webkit.mjs
//
// Debian's WebKitGTK is built without WebRTC (`RTCPeerConnection` is
// undefined), so no call can be made in it. The script checks:
//
// 1. What a WebKitGTK user sees: "This browser can't join video sessions",
//    the browsers that can, why (no WebRTC), no Join button, never "You
//    joined", and the clinician never sees them waiting.
// 2. The screens before a call, in WebKit's engine (Safari's), with a
//    stand-in `RTCPeerConnection` that the test gives the page (it only
//    answers the pre-call check's candidate probe; the call would be the
//    first thing to need a real one): the pre-call page with WebKit's mock
//    camera and microphone, the connection verdict, the attestation (its
//    errors, then its answers), and the waiting room, where the clinician
//    sees them. No script error on the way.
//
// Classic WebDriver cannot add a script before a page's own (WebKitGTK
// 2.50's driver has no BiDi), so the stand-in is given to a same-origin
// frame before the join page is written into it: the client runs there
// exactly as on the page, with its link from the tab's sessionStorage.
//
// TLS: MiniBrowser trusts exactly the server's certificate for localhost
// (WebDriver capability webkitgtk:browserOptions.certificates); nothing is
// ignored.
//
// Environment: TANDEM_BIN, TANDEM_CHROMIUM, TANDEM_WEBKITDRIVER (default
// WebKitWebDriver on PATH), TANDEM_MINIBROWSER (default Debian's
// /usr/lib/<arch>/webkit2gtk-4.1/MiniBrowser), SCREENSHOTS_DIR. Needs an X
// display (xvfb-run).

import { chromium } from 'playwright-core';
import { Builder, By } from 'selenium-webdriver';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  CHROMIUM, SHOTS, chromiumArgs, log, sleep, startServer, stepper, stopServer, watchdog,
} from './server.mjs';

const DRIVER = process.env.TANDEM_WEBKITDRIVER || 'WebKitWebDriver';
const MINIBROWSER = process.env.TANDEM_MINIBROWSER || findMiniBrowser();

function findMiniBrowser() {
  for (const dir of fs.readdirSync('/usr/lib')) {
    const candidate = path.join('/usr/lib', dir, 'webkit2gtk-4.1/MiniBrowser');
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

const { step, fail, summary } = stepper();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-webkit-'));
let server;
let chrome;
let driverProcess;
let webkit;

async function cleanup() {
  if (webkit) await Promise.race([webkit.quit(), sleep(5000)]).catch(() => {});
  if (driverProcess) driverProcess.kill('SIGTERM');
  if (chrome) await Promise.race([chrome.close(), sleep(5000)]).catch(() => {});
  await stopServer(server);
  fs.rmSync(tmp, { recursive: true, force: true });
}
watchdog(Number(process.env.WATCHDOG_MS || 90000), cleanup);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** WebKitWebDriver on a free port; resolves once it answers /status. */
async function startDriver() {
  const port = await freePort();
  const child = spawn(DRIVER, [`--port=${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const said = [];
  child.stderr.on('data', (d) => said.push(String(d)));
  const spawned = new Promise((resolve, reject) => {
    child.once('error', (e) => reject(Object.assign(new Error(`cannot start ${DRIVER}: ${e.message}`), { exit: 2 })));
    child.once('spawn', resolve);
  });
  await spawned;
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i += 1) {
    try {
      if ((await fetch(`${url}/status`)).ok) return { child, url };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  child.kill('SIGTERM');
  throw new Error(`${DRIVER} did not answer in 5 s: ${said.join('')}`);
}

// ---- run in the page by WebDriver (serialised; no closure)

/** The words and state of the screen a person sees now. */
function screenNow() {
  const doc = document.getElementById('standin')?.contentDocument || document;
  const screen = [...doc.querySelectorAll('main > section.screen')].find((s) => !s.hidden);
  const visible = (id) => {
    const e = doc.getElementById(id);
    return !!(e && !e.hidden && e.getClientRects().length);
  };
  return {
    screen: screen ? screen.id : null,
    heading: screen ? screen.querySelector('h1').textContent : null,
    text: screen ? screen.innerText : '',
    live: doc.getElementById('live').textContent,
    joinVisible: visible('join'),
    errors: (doc.defaultView.__errors || []).slice(),
  };
}

/**
 * Opens the join page again in a same-origin frame over the whole window,
 * whose window has a stand-in RTCPeerConnection before the client's
 * modules run (they run after the document is written and closed). The
 * stand-in gathers one host candidate, as a browser with WebRTC does in
 * the pre-call check; it can do nothing else. Script errors and unhandled
 * rejections in the frame are kept in `__errors`.
 */
function reopenWithStandIn(done) {
  (async () => {
    const html = await (await fetch(location.pathname, { cache: 'no-store' })).text();
    const frame = document.createElement('iframe');
    frame.id = 'standin';
    frame.title = 'Tandem session';
    frame.style.cssText = 'position:fixed;inset:0;width:100%;height:100%;border:0;z-index:10';
    document.body.append(frame);
    const w = frame.contentWindow;
    w.RTCPeerConnection = class RTCPeerConnection {
      createDataChannel() { return { close() {} }; }
      async createOffer() { return { type: 'offer', sdp: '' }; }
      async setLocalDescription() {
        setTimeout(() => {
          this.onicecandidate?.({ candidate: { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host' } });
          this.onicecandidate?.({ candidate: null });
        }, 10);
      }
      close() {}
    };
    const doc = frame.contentDocument;
    doc.open();
    doc.write(html);
    doc.close();
    // After open(), which clears the window's listeners.
    w.__errors = [];
    w.addEventListener('error', (e) => w.__errors.push(`${e.message} (${e.filename}:${e.lineno})`));
    w.addEventListener('unhandledrejection', (e) => w.__errors.push(`unhandled rejection: ${e.reason}`));
    done(typeof w.RTCPeerConnection);
  })().catch((e) => done(`failed: ${e}`));
}

/** What the pre-call page shows: camera preview, pickers, meter, verdict. */
function precheckNow() {
  const doc = document.getElementById('standin').contentDocument;
  const options = (id) => [...doc.getElementById(id).options].map((o) => o.textContent);
  const preview = doc.getElementById('preview');
  return {
    previewWidth: preview.videoWidth,
    previewPlaying: !preview.paused && preview.readyState >= 2,
    cameras: options('pick-camera'),
    mics: options('pick-mic'),
    speakers: options('pick-speaker'),
    meter: Number(doc.getElementById('meter').getAttribute('aria-valuenow')),
    micHint: doc.getElementById('mic-hint').textContent,
    verdict: doc.getElementById('verdict').dataset.state,
    verdictText: doc.getElementById('verdict-text').textContent,
    attestationShown: !doc.getElementById('attest').hidden,
    problem: doc.getElementById('media-problem').hidden ? '' : doc.getElementById('media-problem').textContent,
  };
}

/** What the attestation says is missing, and where the focus went. */
function attestationErrors() {
  const doc = document.getElementById('standin').contentDocument;
  const shown = ['state-error', 'home-error', 'private-error'].filter((id) => !doc.getElementById(id).hidden);
  return { shown, focus: doc.activeElement?.id || doc.activeElement?.name || null, live: doc.getElementById('live').textContent };
}

// ----

/** Polls `fn` in the page until `ok(result)`; the last result in the error. */
async function waitInPage(fn, ok, timeout, what) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await webkit.executeScript(fn);
    if (ok(last)) return last;
    await sleep(150);
  }
  throw new Error(`${what}: not seen in ${timeout} ms; last ${JSON.stringify(last)}`);
}

try {
  if (!process.env.DISPLAY) throw Object.assign(new Error('no X display: run under xvfb-run -a'), { exit: 2 });
  if (!MINIBROWSER) throw Object.assign(new Error('no MiniBrowser (Debian: libwebkit2gtk-4.1-0); set TANDEM_MINIBROWSER'), { exit: 2 });
  server = await startServer(tmp);
  log(`server on ${server.base}, session ${server.session}`);
  const driver = await startDriver();
  driverProcess = driver.child;
  webkit = await new Builder().usingServer(driver.url).withCapabilities({
    browserName: 'MiniBrowser',
    'webkitgtk:browserOptions': {
      binary: MINIBROWSER,
      args: ['--automation', '--enable-mock-capture-devices=true'],
      // Exactly the server's certificate, for the host the links name.
      certificates: [{ host: 'localhost', certificateFile: path.join(tmp, 'certs', 'cert.pem') }],
    },
  }).build();
  const caps = await webkit.getCapabilities();
  log(`WebKitGTK ${caps.get('browserVersion')} (${caps.get('browserName')})`);
  await webkit.manage().window().setRect({ width: 1280, height: 800 });

  chrome = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(server.spki) });
  const clinician = await (await chrome.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' })).newPage();
  await clinician.goto(server.links.clinician.url, { waitUntil: 'load' });
  await clinician.getByRole('button', { name: 'Join session', exact: true }).click();
  await clinician.getByText('No one is waiting.').first().waitFor({ timeout: 15000 });
  const waitingList = () => clinician.getByRole('list', { name: /Waiting room/ }).getByRole('listitem');

  await step('WebKitGTK (no WebRTC): "This browser can\'t join video sessions", the browsers that can, why, and no join', async () => {
    await webkit.get(server.links.patient.url);
    const seen = await waitInPage(screenNow, (s) => s.heading === "This browser can't join video sessions", 10000, 'the refusal');
    const hasRtc = await webkit.executeScript(() => typeof window.RTCPeerConnection);
    if (hasRtc !== 'undefined') throw new Error(`this WebKitGTK has RTCPeerConnection (${hasRtc}): the refusal is not what its users see`);
    for (const words of ['Chrome, Edge or Firefox on a computer or Android device', 'Safari on an iPhone, iPad or Mac', 'This browser has no video calling (WebRTC)']) {
      if (!seen.text.includes(words)) throw new Error(`the page does not say "${words}": ${seen.text}`);
    }
    if (seen.joinVisible) throw new Error('a Join button is offered');
    // Never joins: after a while it has said nothing of joining, and the
    // clinician has no one waiting.
    await sleep(1500);
    const later = await webkit.executeScript(screenNow);
    if (later.heading !== seen.heading) throw new Error(`the page moved on to "${later.heading}"`);
    if (/join(ed|ing)|waiting room|Connecting/i.test(later.live)) throw new Error(`the page said "${later.live}"`);
    if ((await waitingList().count()) > 0) throw new Error('the clinician sees someone waiting');
    if (SHOTS) {
      fs.mkdirSync(SHOTS, { recursive: true });
      fs.writeFileSync(path.join(SHOTS, 'webkit-refusal.png'), await webkit.takeScreenshot(), 'base64');
    }
  });

  let standIn = false;
  await step('WebKit with a stand-in RTCPeerConnection: the pre-call page shows the mock camera, microphone level, pickers and a verdict', async () => {
    const made = await webkit.executeAsyncScript(reopenWithStandIn);
    if (made !== 'function') throw new Error(`the stand-in frame: ${made}`);
    standIn = true;
    await waitInPage(screenNow, (s) => s.screen === 'screen-precheck', 10000, 'the pre-call page');
    const p = await waitInPage(precheckNow, (x) => x.previewPlaying && x.previewWidth > 0 && x.verdict !== 'pending' && x.cameras.length > 0, 15000, 'the camera preview and the verdict');
    if (!p.cameras.some((c) => /Mock video/.test(c)) || !p.mics.some((m) => /Mock audio/.test(m)) || !p.speakers.length) throw new Error(`pickers: ${JSON.stringify(p)}`);
    if (p.verdict !== 'good') throw new Error(`verdict ${p.verdict}: ${p.verdictText}`);
    if (!p.attestationShown) throw new Error('no attestation for a patient');
    if (p.problem) throw new Error(`a camera problem is shown: ${p.problem}`);
    const heard = await waitInPage(precheckNow, (x) => x.micHint === 'We can hear you.', 5000, 'the microphone level');
    if (SHOTS) {
      // WebKitGTK paints a frame's changes late under Xvfb (its screenshot
      // lags the page by a second or more); a picture, not a check.
      await sleep(3000);
      fs.writeFileSync(path.join(SHOTS, 'webkit-pre-call.png'), await webkit.takeScreenshot(), 'base64');
    }
    const errors = (await webkit.executeScript(screenNow)).errors;
    if (errors.length) throw new Error(`script errors: ${errors.join('; ')}`);
    return `preview ${p.previewWidth} px wide, ${p.cameras.join(', ')} / ${p.mics.join(', ')}, speaker "${p.speakers.join(', ')}", meter ${heard.meter}, "${p.verdictText}"`;
  });

  await step('WebKit: the attestation names what is unanswered, then Join leads to the waiting room, where the clinician sees them', async () => {
    if (!standIn) throw new Error('no stand-in frame (the step before failed)');
    await webkit.switchTo().frame(await webkit.findElement(By.id('standin')));
    try {
      await webkit.findElement(By.id('join')).click();
      await webkit.switchTo().defaultContent();
      const e = await waitInPage(attestationErrors, (x) => x.shown.length === 3 && x.live !== '', 5000, 'the attestation errors and their announcement');
      if (e.focus !== 'state') throw new Error(`the focus went to ${e.focus}, not the first question`);
      if (e.live !== 'Please answer the questions before joining.') throw new Error(`announced "${e.live}"`);
      if ((await waitingList().count()) > 0) throw new Error('joined without the answers');
      await webkit.switchTo().frame(await webkit.findElement(By.id('standin')));
      await webkit.findElement(By.css('#state option[value="NY"]')).click();
      await webkit.findElement(By.css('input[name="at_home"][value="yes"]')).click();
      await webkit.findElement(By.css('input[name="private"][value="yes"]')).click();
      await webkit.findElement(By.id('join')).click();
    } finally {
      await webkit.switchTo().defaultContent();
    }
    const t0 = Date.now();
    const w = await waitInPage(screenNow, (s) => s.heading === "You're in the waiting room", 15000, 'the waiting room');
    const inRoom = Date.now() - t0;
    if (!w.text.includes('Your clinician will let you in.')) throw new Error(`the waiting room says: ${w.text}`);
    await waitingList().filter({ hasText: 'Alex Morgan' }).first().waitFor({ timeout: 10000 });
    // Their own picture plays there (it starts a moment after the screen).
    await waitInPage(() => document.getElementById('standin').contentDocument.getElementById('waiting-preview').videoWidth, (width) => width > 0, 5000, 'their own picture in the waiting room');
    if (w.errors.length) throw new Error(`script errors: ${w.errors.join('; ')}`);
    return `waiting room ${inRoom} ms after Join; the clinician sees Alex Morgan waiting`;
  });
} catch (e) {
  fail(e);
  if (e && e.exit === 2) process.exitCode = 2;
} finally {
  const failures = summary('The web client in WebKitGTK');
  if (failures && server) log(`server log (last lines):\n  ${server.serverLog.slice(-30).join('\n  ')}`);
  await cleanup();
  process.exit(process.exitCode || (failures ? 1 : 0));
}
