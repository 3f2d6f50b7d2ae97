// The main flow in Firefox ESR: a patient in Firefox (Debian's firefox-esr,
// driven by puppeteer-core over WebDriver BiDi) and their clinician in
// Chromium (playwright-core) go through the pre-call check, the
// attestation, the waiting room, admission, video both ways, mute and
// leave, against this build's `tandem demo` over real TLS.
//
//   MEDIA_IP=10.203.0.1 TANDEM_BIN=target/debug/tandem node web-client/tests/firefox.mjs
//
// Firefox never uses 127.0.0.1 candidates, so the server announces
// MEDIA_IP (`tandem demo --media-ip`), an address of this machine other
// than loopback; tests/integration/web_client_firefox.rs runs this script
// in a network namespace of its own with such an address.
//
// With MEDIA_IP=loopback-only the script checks the other side, on a
// machine (namespace) with nothing but loopback and the demo's default
// media address 127.0.0.1, where Firefox can never connect: the demo warns
// about it, and the Firefox patient, admitted twice, is told that the
// network blocks the call instead of going back to the waiting room again
// and again.
//
// Environment: TANDEM_BIN, TANDEM_CHROMIUM, TANDEM_FIREFOX (default
// /usr/bin/firefox-esr), MEDIA_IP (required), SCREENSHOTS_DIR.
//
// TLS: Chromium accepts exactly the server's key; Firefox is started with
// acceptInsecureCerts (WebDriver's capability), as it has no key pin.

import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CHROMIUM, SHOTS, chromiumArgs, decodedInPage, log, mediaSummaryInPage, observePeerConnections, sleep, startServer,
  stepper, stopServer, waitDecoding, watchdog,
} from './server.mjs';

const FIREFOX = process.env.TANDEM_FIREFOX || '/usr/bin/firefox-esr';
const MEDIA_IP = process.env.MEDIA_IP;

// What makes a call work in headless Firefox with no camera, microphone or
// sound device (see TESTING.md).
const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  'media.cubeb.force_mock_context': true,
  'media.peerconnection.ice.default_address_only': false,
  'media.autoplay.default': 0,
  'dom.min_background_timeout_value': 4,
  'media.suspend-background-video.enabled': false,
};

const { step, fail, summary } = stepper();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-firefox-'));
let server;
let chrome;
let firefox;

async function cleanup() {
  if (firefox) await Promise.race([firefox.close(), sleep(5000)]).catch(() => {});
  if (chrome) await Promise.race([chrome.close(), sleep(5000)]).catch(() => {});
  await stopServer(server);
  fs.rmSync(tmp, { recursive: true, force: true });
}
watchdog(Number(process.env.WATCHDOG_MS || 150000), cleanup);

const pageProblems = [];
try {
  if (!MEDIA_IP) throw Object.assign(new Error('MEDIA_IP is not set (an address of this machine other than 127.0.0.1)'), { exit: 2 });
  const loopbackOnly = MEDIA_IP === 'loopback-only';
  server = await startServer(tmp, loopbackOnly ? [] : ['--media-ip', MEDIA_IP]);
  log(`server on ${server.base}, media on ${loopbackOnly ? '127.0.0.1 (loopback only)' : MEDIA_IP}`);

  chrome = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(server.spki) });
  firefox = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    acceptInsecureCerts: true,
    extraPrefsFirefox: FIREFOX_PREFS,
  });
  log(`Chromium ${chrome.version()}, ${await firefox.version()}`);

  let clin;
  let pat;
  const text = (t) => `::-p-text(${t})`;
  const ffVisible = (selector, timeout = 10000) => pat.waitForSelector(selector, { visible: true, timeout });
  const liveSays = (t, timeout = 10000) => pat.waitForFunction((x) => document.getElementById('live').textContent.includes(x), { timeout, polling: 100 }, t);

  await step('clinician (Chromium) joins', async () => {
    const context = await chrome.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
    await context.addInitScript(observePeerConnections);
    clin = await context.newPage();
    clin.on('pageerror', (e) => pageProblems.push(`clinician: ${e}`));
    await clin.goto(server.links.clinician.url);
    await clin.getByRole('button', { name: 'Join session', exact: true }).click();
    await clin.getByText('No one is waiting.').waitFor({ timeout: 10000 });
  });

  await step('patient (Firefox): pre-call check, attestation, waiting room', async () => {
    pat = await firefox.newPage();
    await pat.setViewport({ width: 1280, height: 800 });
    await pat.evaluateOnNewDocument(observePeerConnections);
    pat.on('pageerror', (e) => pageProblems.push(`patient: ${e.message || e}`));
    await pat.goto(server.links.patient.url, { waitUntil: 'load' });
    await ffVisible(text('Get ready for your session'));
    // With nothing but loopback Firefox gathers no candidate, and the
    // pre-call check already says so.
    await ffVisible(text(loopbackOnly ? 'Your connection may not support video' : 'Your connection looks good'), 15000);
    // The fake camera shows in the preview.
    await pat.waitForFunction(() => document.getElementById('preview').videoWidth > 0, { timeout: 10000 });
    await pat.select('#state', 'NY');
    await pat.click('input[name="at_home"][value="yes"]');
    await pat.click('input[name="private"][value="yes"]');
    await pat.click('#join');
    await ffVisible(text("You're in the waiting room"));
  });

  if (loopbackOnly) {
    await step('loopback only: the demo warns that Firefox cannot connect and suggests --media-ip', async () => {
      await sleep(300);
      const warning = server.stdout.find((l) => l.includes('Firefox cannot connect to 127.0.0.1'));
      if (!warning || !warning.includes('--media-ip')) throw new Error(`no warning in:\n${server.stdout.join('\n')}`);
    });
    await step('loopback only: the Firefox patient, admitted twice, is told that the network blocks the call', async () => {
      const row = () => clin.getByRole('list', { name: /Waiting room/ }).getByRole('listitem').filter({ hasText: 'Alex Morgan' });
      const t0 = Date.now();
      await row().getByRole('button', { name: 'Admit', exact: true }).click();
      await ffVisible(text("You're back in the waiting room"), 25000);
      const first = Date.now() - t0;
      await row().getByRole('button', { name: 'Admit', exact: true }).click();
      const t1 = Date.now();
      await ffVisible(text('Your network is blocking the video call'), 25000);
      const second = Date.now() - t1;
      await clin.waitForFunction(() => document.getElementById('live').textContent.includes('Alex Morgan left: their sound and video could not connect'), null, { timeout: 10000 });
      await sleep(2000);
      if ((await row().count()) > 0) throw new Error('the patient knocked again');
      return `back in the waiting room ${first} ms after the first Admit; named ${second} ms after the second`;
    }, { timeout: 70000 });
  } else {
    let admitted = 0;
    await step('the clinician admits the patient; Firefox decodes the clinician\'s video, Chromium the patient\'s', async () => {
      const row = clin.getByRole('list', { name: /Waiting room/ }).getByRole('listitem').filter({ hasText: 'Alex Morgan' });
      await row.getByRole('button', { name: 'Admit', exact: true }).click();
      admitted = Date.now();
      const ff = await waitDecoding(() => pat.evaluate(decodedInPage), 1, 15000, 'Firefox').catch(async (e) => {
        throw new Error(`${e.message}\n  Firefox: ${await pat.evaluate(mediaSummaryInPage)}\n  Chromium: ${await clin.evaluate(mediaSummaryInPage)}`);
      });
      const firstFrame = Date.now() - admitted;
      const ch = await waitDecoding(() => clin.evaluate(decodedInPage), 1, 15000, 'Chromium');
      // What the person sees: the clinician's tile with a picture.
      await pat.waitForFunction(() => [...document.querySelectorAll('figure.tile')]
        .some((t) => t.textContent.includes('Dr Rivera') && t.querySelector('video').videoWidth > 0), { timeout: 10000 });
      await clin.locator('figure.tile').filter({ hasText: 'Alex Morgan' }).locator('video')
        .evaluate((v) => v.videoWidth > 0).then((ok) => { if (!ok) throw new Error("the clinician's tile of Alex shows no video"); });
      return `Firefox decoded its first frames ${firstFrame} ms after Admit (${ff.frames.join('+')} frames); Chromium ${ch.frames.join('+')} frames`;
    }, { timeout: 45000 });

    await step('end-to-end encrypted (the demo is preferred): both show it, with the same safety code', async () => {
      const read = () => ({ mode: document.getElementById('e2ee-mode').textContent, code: document.getElementById('e2ee-code').textContent });
      const deadline = Date.now() + 10000;
      let ff;
      let ch;
      while (Date.now() < deadline) {
        ff = await pat.evaluate(read);
        ch = await clin.evaluate(read);
        if (ff.code && ff.code === ch.code) break;
        await sleep(200);
      }
      for (const [who, s] of [['Firefox', ff], ['Chromium', ch]]) {
        if (s.mode !== 'End-to-end encrypted') throw new Error(`${who}: ${JSON.stringify(s)}`);
      }
      if (!ff.code || ff.code !== ch.code) throw new Error(`codes: Firefox ${ff.code}, Chromium ${ch.code}`);
      return `${ff.mode}; ${ff.code} on both`;
    });

    await step('screenshot of Firefox\'s call page', async () => {
      if (!SHOTS) return 'skipped (no SCREENSHOTS_DIR)';
      fs.mkdirSync(SHOTS, { recursive: true });
      await sleep(2000);
      await pat.evaluate(() => document.getElementById('live').classList.remove('show'));
      await pat.screenshot({ path: path.join(SHOTS, 'firefox-call.png') });
      return 'firefox-call.png';
    });

    await step('mute in Firefox: the clinician sees the microphone off', async () => {
      await pat.click('#btn-mic');
      await ffVisible(text('Unmute'));
      await clin.locator('figure.tile').filter({ hasText: 'Alex Morgan' }).getByText('Microphone off').waitFor({ timeout: 10000 });
      await pat.click('#btn-mic');
      await clin.locator('figure.tile').filter({ hasText: 'Alex Morgan' }).getByText('Microphone off').waitFor({ state: 'detached', timeout: 10000 });
    });

    await step('leave in Firefox: the patient is told, the clinician sees them go', async () => {
      await pat.click('#btn-leave');
      await ffVisible(text("You've left the session"));
      await clin.locator('figure.tile').filter({ hasText: 'Alex Morgan' }).waitFor({ state: 'detached', timeout: 10000 });
      if (pageProblems.length) throw new Error(pageProblems.join('\n'));
    });
  }
} catch (e) {
  fail(e);
  if (e && e.exit === 2) process.exitCode = 2;
} finally {
  const failures = summary('Firefox ESR main flow');
  if (failures && server) log(`server log (last lines):\n  ${server.serverLog.slice(-30).join('\n  ')}`);
  await cleanup();
  process.exit(process.exitCode || (failures ? 1 : 0));
}
