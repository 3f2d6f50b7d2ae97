// One browser participant in a Tandem room, for tests/integration/browser.rs (cargo test).
//
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// with a fake camera and microphone opens the join page of a running test
// server, speaks the signaling protocol (docs/protocol.md) from inside the
// page, publishes its camera and microphone on `pub`, answers every `sub`
// offer, and waits until it has decoded enough of the video it receives.
//
//   node call.mjs --url https://localhost:PORT --session ID --token JWT \
//                 --spki BASE64 [--expect-stream ID] [--frames 30] [--timeout-ms 25000]
//                 [--resolve IP]
//
// --resolve: the URL's host name resolves to IP (for a server in a network
// namespace of the test's own, where `localhost` is not the server).
//
// Progress goes to stderr. On success one line `RESULT {json}` goes to
// stdout; the browser then keeps publishing until stdin closes (the Rust
// side is still checking what it receives), at most --hold-ms. Exit code 0
// on success, 1 on failure (after `FAILED {json}` on stdout), 2 on bad usage.
//
// TLS: the page is loaded over real TLS from the test server, whose
// certificate comes from a CA made for that test run. Chromium is told to
// accept exactly that server key (--ignore-certificate-errors-spki-list with
// the base64 SHA-256 of its SubjectPublicKeyInfo); every other certificate
// error still fails.

import { chromium } from 'playwright-core';
import { parseArgs } from 'node:util';
import { openPage } from './server.mjs';

const CHROMIUM = process.env.TANDEM_CHROMIUM || '/usr/bin/chromium';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    session: { type: 'string' },
    token: { type: 'string' },
    spki: { type: 'string' },
    'expect-stream': { type: 'string' },
    frames: { type: 'string', default: '30' },
    'timeout-ms': { type: 'string', default: '25000' },
    'hold-ms': { type: 'string', default: '15000' },
    resolve: { type: 'string' },
  },
});
for (const name of ['url', 'session', 'token', 'spki']) {
  if (!args[name]) {
    console.error(`call.mjs: --${name} is required`);
    process.exit(2);
  }
}
const wantFrames = Number(args.frames);
const started = Date.now();
const deadline = started + Number(args['timeout-ms']);

function log(message) {
  console.error(`[browser +${((Date.now() - started) / 1000).toFixed(2)}s] ${message}`);
}

/** Runs `promise` with a time limit named after the step. */
async function step(what, ms, promise) {
  const limit = Math.max(100, Math.min(ms, deadline - Date.now()));
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms: ${what}`)), limit);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The protocol client, run inside the page (page.evaluate: the page's CSP
// allows no inline script, and evaluation through DevTools is not subject
// to it). It keeps its state on window.__tandem for the polls below.
async function startClient({ token, wsUrl }) {
  const state = {
    events: [],
    errors: [],
    joined: null,
    denied: null,
    subOffers: 0,
    pubAnswered: false,
    remoteTracks: [],
    closed: null,
    pcs: {},
  };
  window.__tandem = state;
  const note = (text) => state.events.push(`${(performance.now() / 1000).toFixed(2)} ${text}`);
  const fail = (text) => {
    state.errors.push(text);
    note(`error: ${text}`);
  };

  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  note(`camera and microphone: ${media.getTracks().map((t) => t.kind).join(', ')}`);

  const ws = new WebSocket(wsUrl);
  const send = (message) => ws.send(JSON.stringify(message));
  const buffered = { pub: [], sub: [] };
  const remoteSet = { pub: false, sub: false };

  function makePc(name, iceServers) {
    const pc = new RTCPeerConnection({ iceServers });
    state.pcs[name] = pc;
    pc.onicecandidate = (e) =>
      send({ type: 'candidate', pc: name, candidate: e.candidate ? e.candidate.toJSON() : null });
    pc.onconnectionstatechange = () => note(`${name}: ${pc.connectionState}`);
    return pc;
  }

  async function addCandidate(name, candidate) {
    const pc = state.pcs[name];
    if (!pc || !remoteSet[name]) {
      buffered[name].push(candidate);
      return;
    }
    try {
      // null: the end of candidates.
      await pc.addIceCandidate(candidate ?? undefined);
    } catch (e) {
      // Chromium refuses the end-of-candidates marker in some states; not fatal.
      if (candidate) fail(`addIceCandidate(${name}, ${candidate.candidate}): ${e}`);
    }
  }

  async function remoteDescriptionSet(name) {
    remoteSet[name] = true;
    for (const candidate of buffered[name].splice(0)) await addCandidate(name, candidate);
  }

  async function onJoined(message) {
    state.joined = message;
    note(`joined as ${message.you.id} with [${message.participants.map((p) => p.id).join(', ')}]`);
    const sub = makePc('sub', message.ice_servers || []);
    sub.ontrack = (e) => {
      const streams = e.streams.map((s) => s.id);
      state.remoteTracks.push({ kind: e.track.kind, streams, mid: e.transceiver.mid });
      note(`remote ${e.track.kind} track of [${streams.join(', ')}]`);
    };
    const pub = makePc('pub', message.ice_servers || []);
    for (const track of media.getTracks()) pub.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    const offer = await pub.createOffer();
    await pub.setLocalDescription(offer);
    send({ type: 'offer', pc: 'pub', sdp: offer.sdp });
    note('pub offer sent');
  }

  async function handle(message) {
    switch (message.type) {
      case 'joined':
        return onJoined(message);
      case 'denied':
        state.denied = message;
        return fail(`denied: ${message.code}`);
      case 'answer': {
        if (message.pc !== 'pub') return fail(`an answer for ${message.pc}`);
        await state.pcs.pub.setRemoteDescription({ type: 'answer', sdp: message.sdp });
        state.pubAnswered = true;
        note('pub answer applied');
        return remoteDescriptionSet('pub');
      }
      case 'offer': {
        if (message.pc !== 'sub') return fail(`an offer for ${message.pc}`);
        const sub = state.pcs.sub;
        if (!sub) return fail('a sub offer before joined');
        await sub.setRemoteDescription({ type: 'offer', sdp: message.sdp });
        await remoteDescriptionSet('sub');
        const answer = await sub.createAnswer();
        await sub.setLocalDescription(answer);
        send({ type: 'answer', pc: 'sub', sdp: answer.sdp });
        state.subOffers += 1;
        note(`sub offer #${state.subOffers} answered`);
        return;
      }
      case 'candidate':
        return addCandidate(message.pc, message.candidate);
      case 'error':
        return fail(`server error ${message.code}: ${message.message}`);
      default:
        note(`(${message.type})`);
    }
  }

  // Messages are handled one at a time, in order.
  let chain = Promise.resolve();
  ws.onmessage = (e) => {
    let message;
    try {
      message = JSON.parse(e.data);
    } catch {
      return fail(`not JSON: ${String(e.data).slice(0, 100)}`);
    }
    chain = chain.then(() => handle(message)).catch((err) => fail(`handling ${message.type}: ${err}`));
  };
  ws.onclose = (e) => {
    state.closed = { code: e.code, reason: e.reason };
    note(`signaling closed: ${e.code} ${e.reason}`);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`WebSocket to ${wsUrl} failed`));
  });
  note('signaling open');
  send({ type: 'join', token });
}

// What the page's connections report (getStats), plus the client's state.
async function readState() {
  const state = window.__tandem;
  const out = {
    events: state.events.slice(),
    errors: state.errors.slice(),
    joined: state.joined && state.joined.you.id,
    denied: state.denied,
    closed: state.closed,
    subOffers: state.subOffers,
    pubAnswered: state.pubAnswered,
    remoteTracks: state.remoteTracks,
    pub: null,
    sub: null,
  };
  const codecs = (stats) => {
    const byId = {};
    stats.forEach((s) => {
      if (s.type === 'codec') byId[s.id] = s.mimeType;
    });
    return byId;
  };
  for (const name of ['pub', 'sub']) {
    const pc = state.pcs[name];
    if (!pc) continue;
    const stats = await pc.getStats();
    const mime = codecs(stats);
    const summary = { connectionState: pc.connectionState, inbound: [], outbound: [], route: null, pairs: [] };
    // The candidate pair media flows on: which transport, to which port.
    stats.forEach((s) => {
      if (s.type !== 'candidate-pair') return;
      const remote = stats.get(s.remoteCandidateId);
      summary.pairs.push(`${s.state} ${remote?.protocol} ${remote?.address}:${remote?.port} sent ${s.requestsSent || 0} got ${s.responsesReceived || 0}`);
    });
    stats.forEach((s) => {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      if (local && remote) {
        summary.route = {
          protocol: local.protocol,
          localType: local.candidateType,
          remoteAddress: remote.address,
          remotePort: remote.port,
        };
      }
    });
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        summary.inbound.push({
          kind: s.kind,
          codec: mime[s.codecId] || null,
          packetsReceived: s.packetsReceived || 0,
          packetsLost: s.packetsLost || 0,
          bytesReceived: s.bytesReceived || 0,
          framesReceived: s.framesReceived,
          framesDecoded: s.framesDecoded,
          keyFramesDecoded: s.keyFramesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          pliCount: s.pliCount,
          decoderImplementation: s.decoderImplementation,
        });
      } else if (s.type === 'outbound-rtp') {
        summary.outbound.push({
          kind: s.kind,
          codec: mime[s.codecId] || null,
          packetsSent: s.packetsSent || 0,
          bytesSent: s.bytesSent || 0,
          framesEncoded: s.framesEncoded,
          keyFramesEncoded: s.keyFramesEncoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          encoderImplementation: s.encoderImplementation,
        });
      }
    });
    out[name] = summary;
  }
  return out;
}

function inboundVideo(state) {
  return state?.sub?.inbound.find((s) => s.kind === 'video') || null;
}

function outboundVideo(state) {
  return state?.pub?.outbound.find((s) => s.kind === 'video') || null;
}

/** Waits for stdin to end (the test is done with us), at most `ms`. */
function stdinClosed(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('hold timeout'), ms);
    process.stdin.on('end', () => {
      clearTimeout(timer);
      resolve('stdin closed');
    });
    process.stdin.on('error', () => resolve('stdin error'));
    process.stdin.resume();
  });
}

let browser;
let page;
let last = null;
let exitCode = 0;
try {
  const flags = [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-quic',
    '--mute-audio',
    '--no-sandbox',
    '--headless',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    `--ignore-certificate-errors-spki-list=${args.spki}`,
  ];
  if (args.resolve) flags.push(`--host-resolver-rules=MAP ${new URL(args.url).hostname} ${args.resolve}`);
  browser = await step('launching Chromium', 15000, chromium.launch({ executablePath: CHROMIUM, headless: true, args: flags }));
  log(`Chromium ${browser.version()} launched`);
  // A TLS error must fail the test, never be clicked through.
  const context = await browser.newContext({ ignoreHTTPSErrors: false });
  page = await context.newPage();
  page.on('console', (m) => log(`page console.${m.type()}: ${m.text()} (${m.location().url})`));
  page.on('pageerror', (e) => log(`page error: ${e}`));

  const base = args.url.replace(/\/$/, '');
  const joinUrl = `${base}/j/${encodeURIComponent(args.session)}#t=${args.token}`;
  const response = await step('loading the join page', 10000, openPage(page, joinUrl));
  if (!response || response.status() !== 200) throw new Error(`join page: HTTP ${response && response.status()}`);
  const security = await response.securityDetails();
  log(`join page loaded over ${security?.protocol} (${security?.subjectName}, issuer ${security?.issuer})`);
  const statusText = await step('the join page script', 5000, page.locator('#status').textContent());
  log(`join page says: ${statusText}`);

  const wsUrl = `${base.replace(/^https:/, 'wss:')}/v1/signal`;
  await step('starting the protocol client in the page', 10000, page.evaluate(startClient, { token: args.token, wsUrl }));
  log('protocol client running in the page');

  let reported = 0;
  let lastPrint = 0;
  for (;;) {
    last = await step('reading getStats', 5000, page.evaluate(readState));
    for (const event of last.events.slice(reported)) log(`page: ${event}`);
    reported = last.events.length;
    if (last.denied) throw new Error(`denied: ${JSON.stringify(last.denied)}`);
    if (last.closed) throw new Error(`the server closed the signaling socket: ${JSON.stringify(last.closed)}`);
    const inbound = inboundVideo(last);
    if (Date.now() - lastPrint > 1000) {
      lastPrint = Date.now();
      const out = outboundVideo(last);
      log(`sub ${last.sub?.connectionState ?? '-'}, pub ${last.pub?.connectionState ?? '-'}; ` +
        `received video: ${inbound ? `${inbound.codec} ${inbound.bytesReceived} B, ${inbound.framesDecoded ?? 0} frames decoded, ${inbound.frameWidth ?? '?'}x${inbound.frameHeight ?? '?'}` : 'none'}; ` +
        `sent video: ${out ? `${out.codec} ${out.bytesSent} B, ${out.framesEncoded ?? 0} frames encoded` : 'none'}`);
    }
    if (inbound && (inbound.framesDecoded || 0) >= wantFrames) break;
    if (Date.now() >= deadline) {
      throw new Error(`no ${wantFrames} decoded video frames within ${args['timeout-ms']} ms`);
    }
    await sleep(200);
  }

  const inbound = inboundVideo(last);
  const remote = last.remoteTracks.find((t) => t.kind === 'video');
  if (args['expect-stream'] && !(remote && remote.streams.includes(args['expect-stream']))) {
    throw new Error(`the video track's stream ids are ${JSON.stringify(remote?.streams)}, not [${args['expect-stream']}]`);
  }
  const result = {
    ok: true,
    elapsed_ms: Date.now() - started,
    chromium: browser.version(),
    participant: last.joined,
    remote_video_streams: remote ? remote.streams : [],
    received_video: inbound,
    sub_route: last.sub?.route || null,
    pub_route: last.pub?.route || null,
    sent_video: outboundVideo(last),
    sent_audio: last.pub?.outbound.find((s) => s.kind === 'audio') || null,
    sub_offers: last.subOffers,
    errors: last.errors,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  log(`decoded ${inbound.framesDecoded} frames; publishing until the test is done`);
  const why = await stdinClosed(Number(args['hold-ms']));
  log(`done (${why})`);
} catch (e) {
  exitCode = 1;
  if (page && !last) {
    try {
      last = await step('reading the final state', 3000, page.evaluate(readState));
    } catch {
      // the page is gone; report what we have
    }
  }
  console.log(`FAILED ${JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e), state: last })}`);
  log(`FAILED: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) {
    await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
  }
}
process.exit(exitCode);
