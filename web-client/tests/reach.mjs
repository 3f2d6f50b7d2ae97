// What the client says when a call cannot work (Chromium, driven by
// playwright-core, against this build's `tandem demo` over real TLS):
//
// - a browser without WebRTC is refused in words and never joins;
// - a camera busy in another app is explained;
// - a browser that cannot create the media connection leaves in words
//   after admission, never "You joined", and the clinician hears why;
// - a network that never lets media through is named after two attempts,
//   not looped through the waiting room, and the clinician sees "Not
//   connected" meanwhile and hears why they left;
// - the camera and microphone are switched during the call (Chromium's fake
//   devices) and the clinician keeps receiving them;
// - a person who clicks "Join session" while the camera is still starting
//   joins with it, not without.
//
//   TANDEM_BIN=target/debug/tandem node web-client/tests/reach.mjs
//
// The browser's limits are made by scripts the test adds to each page
// before the client's own (addInitScript), never by hooks in the client.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CHROMIUM, SHOTS, chromiumArgs, decodedInPage, log, observePeerConnections, sleep, startServer, stepper, stopServer,
  waitDecoding, watchdog,
} from './server.mjs';

const { step, fail, summary } = stepper();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-reach-'));
let server;
let browser;

async function cleanup() {
  if (browser) await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
  await stopServer(server);
  fs.rmSync(tmp, { recursive: true, force: true });
}
watchdog(Number(process.env.WATCHDOG_MS || 170000), cleanup);

// ---- what the test does to a page's browser before the client loads

/** A browser without WebRTC (WebKitGTK in Debian, or WebRTC turned off). */
function withoutWebRtc() {
  delete window.RTCPeerConnection;
  delete window.webkitRTCPeerConnection;
}

/** A camera and microphone held by another app. */
function cameraBusy() {
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Could not start video source', 'NotReadableError'));
}

/** A browser whose RTCPeerConnection exists but cannot be created (a policy, an extension). */
function peerConnectionRefused() {
  window.RTCPeerConnection = function RTCPeerConnection() {
    throw new DOMException('RTCPeerConnection is disabled', 'NotSupportedError');
  };
}

/** A camera and microphone that take seconds to start (a slow machine, a permission prompt). */
function slowCamera() {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => new Promise((resolve) => setTimeout(resolve, 4000)).then(() => original(constraints));
}

/**
 * A network that lets no media through: every connection may use relays
 * only, and there are none, so no candidate pair ever forms (as where all
 * UDP and every TCP port the server uses are blocked).
 */
function mediaBlocked() {
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function RTCPeerConnection(config = {}) {
    return new Original({ ...config, iceServers: [], iceTransportPolicy: 'relay' });
  };
  window.RTCPeerConnection.prototype = Original.prototype;
}

try {
  server = await startServer(tmp);
  log(`server on ${server.base}, session ${server.session}`);
  // Three fake cameras, for the switch during the call: Chromium's second
  // fake camera sends 16-bit depth frames (Y16), which no encoder takes;
  // the third sends MJPEG, as many webcams do.
  const args = chromiumArgs(server.spki).map((a) => (a === '--use-fake-device-for-media-stream' ? `${a}=device-count=3` : a));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  log(`Chromium ${browser.version()}`);

  const sockets = new Map();
  async function open(who, url, init) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
    if (init) await context.addInitScript(init);
    const page = await context.newPage();
    sockets.set(who, 0);
    page.on('websocket', () => sockets.set(who, sockets.get(who) + 1));
    await page.goto(url, { waitUntil: 'load' });
    return { page, context, who };
  }
  const heading = (page, name) => page.getByRole('heading', { name, exact: true });
  const visible = (locator, timeout = 10000) => locator.first().waitFor({ state: 'visible', timeout });
  const button = (page, name) => page.getByRole('button', { name, exact: true });
  const liveSays = (page, text, timeout = 10000) => page.waitForFunction((t) => document.getElementById('live').textContent.includes(t), text, { timeout, polling: 100 });
  async function attestAndJoin(page) {
    await page.getByLabel('Which state are you in right now?').selectOption('NY');
    await page.getByLabel('At home').check();
    await page.getByLabel("Yes, it's private").check();
    await button(page, 'Join session').click();
    await visible(heading(page, "You're in the waiting room"));
  }

  await step('a browser without WebRTC: "This browser can\'t join video sessions", the browsers that can, and no join', async () => {
    const p = await open('no WebRTC', server.links.patient.url, withoutWebRtc);
    await visible(heading(p.page, "This browser can't join video sessions"));
    await visible(p.page.getByText(/Chrome, Edge or Firefox .* Safari/));
    await visible(p.page.getByText('This browser has no video calling (WebRTC)'));
    await sleep(1000);
    if (await button(p.page, 'Join session').isVisible()) throw new Error('a Join button is offered');
    if (sockets.get(p.who)) throw new Error('the page opened the signaling socket');
    if (SHOTS) {
      fs.mkdirSync(SHOTS, { recursive: true });
      await p.page.screenshot({ path: path.join(SHOTS, 'unsupported-browser.png') });
    }
    await p.context.close();
  });

  await step('a camera busy in another app is explained on the pre-call page', async () => {
    const p = await open('camera busy', server.links.patient.url, cameraBusy);
    await visible(p.page.getByText('Your camera or microphone is in use by another app'));
    await p.context.close();
  });

  const clin = await open('clinician', server.links.clinician.url, observePeerConnections);
  await button(clin.page, 'Join session').click();
  await visible(clin.page.getByText('No one is waiting.'));
  const waitingRow = (name) => clin.page.getByRole('list', { name: /Waiting room/ }).getByRole('listitem').filter({ hasText: name });

  await step('a browser that cannot create the connection: after Admit it says so and leaves; the clinician hears why', async () => {
    const p = await open('no peer connection', server.links.patient.url, peerConnectionRefused);
    await attestAndJoin(p.page);
    await waitingRow('Alex Morgan').getByRole('button', { name: 'Admit', exact: true }).click();
    await visible(heading(p.page, "This browser couldn't start the video call"));
    const said = await p.page.locator('#live').textContent();
    if (/You joined/.test(said)) throw new Error(`the page said "${said}"`);
    await liveSays(clin.page, "Alex Morgan left: their sound and video could not connect");
    await p.context.close();
  }, { timeout: 30000 });

  await step('a network that lets no media through: named after two attempts, not looped; the clinician hears why', async () => {
    const p = await open('media blocked', server.links.partner.url, mediaBlocked);
    await attestAndJoin(p.page);
    // Meanwhile the clinician's panel says that nothing arrives from them
    // (after 12 s in the room), rather than "Measuring connection…".
    const notConnected = clin.page.locator('#people-list').getByText('Not connected: no sound or video has arrived from them')
      .first().waitFor({ timeout: 45000 }).then(() => true, () => false);
    const t0 = Date.now();
    await waitingRow('Sam Morgan').getByRole('button', { name: 'Admit', exact: true }).click();
    // The first failure is a reconnect, as a short outage would be: back
    // in the waiting room, and the clinician lets them in again.
    await visible(heading(p.page, "You're back in the waiting room"), 25000);
    const firstFailure = Date.now() - t0;
    await waitingRow('Sam Morgan').getByRole('button', { name: 'Admit', exact: true }).click();
    const t1 = Date.now();
    await visible(heading(p.page, 'Your network is blocking the video call'), 25000);
    const secondFailure = Date.now() - t1;
    await visible(p.page.locator('#screen-message').getByText('Try another network'));
    await visible(button(p.page, 'Try again'));
    await liveSays(clin.page, 'Sam Morgan left: their sound and video could not connect');
    if (!(await notConnected)) throw new Error('the clinician\'s panel never said "Not connected"');
    if (SHOTS) {
      // The screen under the status toast (which says the same).
      await p.page.evaluate(() => document.getElementById('live').classList.remove('show'));
      await p.page.screenshot({ path: path.join(SHOTS, 'network-blocked.png') });
    }
    // Named, not looped: the page stays on its message and does not
    // knock again.
    await sleep(3000);
    if (!(await heading(p.page, 'Your network is blocking the video call').isVisible())) throw new Error('the message did not stay');
    if ((await waitingRow('Sam Morgan').count()) > 0) throw new Error('the partner is back in the waiting room');
    await p.context.close();
    return `first failure ${firstFailure} ms after Admit, named ${secondFailure} ms after the second Admit`;
  }, { timeout: 70000 });

  await step('devices during the call: the patient switches camera and microphone; the clinician still receives them', async () => {
    const p = await open('switching', server.links.patient.url);
    await attestAndJoin(p.page);
    await waitingRow('Alex Morgan').getByRole('button', { name: 'Admit', exact: true }).click();
    await visible(p.page.getByRole('figure').filter({ hasText: 'Dr Rivera' }));
    await waitDecoding(() => clin.page.evaluate(decodedInPage), 1, 15000, 'the clinician before the switch');
    await button(p.page, 'Devices').click();
    const picker = p.page.locator('#call-devices').getByLabel('Camera', { exact: true });
    await visible(picker);
    const options = await picker.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent, selected: o.selected })));
    if (options.length < 2) throw new Error(`one camera to choose from: ${JSON.stringify(options)}`);
    const other = options.find((o) => !o.selected && /fake_device_2/.test(o.text)) || options.find((o) => !o.selected);
    const before = await p.page.evaluate(() => document.querySelector('figure.self video')?.srcObject?.getVideoTracks()[0]?.getSettings().deviceId);
    await picker.selectOption(other.value);
    await liveSays(p.page, `Now using ${other.text}.`);
    const after = await p.page.evaluate(() => document.querySelector('figure.self video')?.srcObject?.getVideoTracks()[0]?.getSettings().deviceId);
    if (after !== other.value || after === before) throw new Error(`own picture from ${before} to ${after}, wanted ${other.value}`);
    // The clinician keeps decoding Alex's video, from the new camera.
    await sleep(500);
    const r = await waitDecoding(() => clin.page.evaluate(decodedInPage), 1, 10000, 'the clinician after the switch');
    // The microphone, where the browser has a second one: the clinician
    // keeps receiving sound (the only sound they receive is Alex's).
    let mic = 'one microphone only';
    const micPicker = p.page.locator('#call-devices').getByLabel('Microphone', { exact: true });
    const mics = await micPicker.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent, selected: o.selected })));
    const otherMic = mics.find((o) => !o.selected && o.value);
    if (otherMic) {
      const audioBytes = () => clin.page.evaluate(async () => {
        let n = 0;
        for (const pc of window.__pcs) {
          if (pc.connectionState === 'closed') continue;
          (await pc.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'audio') n += x.bytesReceived || 0; });
        }
        return n;
      });
      await micPicker.selectOption(otherMic.value);
      await liveSays(p.page, `Now using ${otherMic.text}.`);
      const inUse = await p.page.evaluate(() => document.getElementById('call-mic').value);
      if (inUse !== otherMic.value) throw new Error(`the picker shows ${inUse}`);
      const b0 = await audioBytes();
      await sleep(1500);
      const b1 = await audioBytes();
      if (b1 <= b0) throw new Error(`no sound from Alex after the switch (${b0} -> ${b1} bytes)`);
      mic = `microphone ${otherMic.text} (${b1 - b0} bytes of sound in 1.5 s)`;
    }
    await button(p.page, 'Hide devices').click();
    await p.context.close();
    return `camera ${other.text}; the clinician decodes on (${r.frames.join('+')} frames); ${mic}`;
  }, { timeout: 40000 });

  await step('joining while the camera is still starting: the person joins with it and the clinician sees them', async () => {
    const p = await open('fast click', server.links.patient.url, slowCamera);
    await p.page.getByLabel('Which state are you in right now?').selectOption('NY');
    await p.page.getByLabel('At home').check();
    await p.page.getByLabel("Yes, it's private").check();
    if (await p.page.locator('#preview').evaluate((v) => !!v.srcObject)) throw new Error('the camera started before the click; the test proves nothing');
    await button(p.page, 'Join session').click();
    await visible(heading(p.page, "You're in the waiting room"), 15000);
    await waitingRow('Alex Morgan').getByRole('button', { name: 'Admit', exact: true }).click();
    const r = await waitDecoding(() => clin.page.evaluate(decodedInPage), 1, 15000, "the clinician, Alex's video");
    await p.context.close();
    return `the clinician decodes Alex's video (${r.frames.join('+')} frames)`;
  }, { timeout: 40000 });
} catch (e) {
  fail(e);
  if (e && e.exit === 2) process.exitCode = 2;
} finally {
  const failures = summary('When a call cannot work');
  if (failures && server) log(`server log (last lines):\n  ${server.serverLog.slice(-30).join('\n  ')}`);
  await cleanup();
  process.exit(process.exitCode || (failures ? 1 : 0));
}
