// The Tandem browser client: pre-call check, attestation, waiting room,
// the call, the clinician's panel, and the messages at the end.
// ES modules, no framework, no inline script or style (the server's CSP).

import { Call } from './session.js';
import {
  openMedia, openCamera, explainMediaError, listDevices, fillSelect, watchLevel,
  playTestSound, connectionTest, audioContext,
} from './precheck.js';
import { deniedMessage, clockTime, ROLE_NAMES, STATES } from './messages.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('aria-') || k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c != null));
  return node;
};

// ---------------------------------------------------------------- state

const app = {
  token: null,
  role: null,
  call: null,
  stream: null, // the pre-call stream (its tracks go into the call)
  cameraId: '',
  micId: '',
  speakerId: '',
  cameraWanted: true,
  stopMeter: () => {},
  localLevel: 0,
  tiles: new Map(),
  lobby: [],
  lockedByMe: new Set(),
  recentlyLeft: new Map(),
  wasInCall: false,
  breakouts: new Map(),
  statsTimer: null,
  clockTimer: null,
  joinedAt: null,
  quality: new Map(),
  screen: null,
  attestation: null,
};

// ---------------------------------------------------------------- helpers

let liveTimer = null;
/** Shows a status line and announces it (the aria-live region). */
function announce(text, { sticky = false } = {}) {
  const live = $('live');
  live.textContent = '';
  live.classList.add('show');
  // A fresh text node after a tick: repeated messages are read again.
  setTimeout(() => { live.textContent = text; }, 30);
  clearTimeout(liveTimer);
  if (!sticky) liveTimer = setTimeout(() => live.classList.remove('show'), 7000);
}

function showScreen(name, { focus = true } = {}) {
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== `screen-${name}`;
  app.screen = name;
  document.body.dataset.screen = name;
  if (focus) {
    const h = document.querySelector(`#screen-${name} h1`);
    if (h) h.focus({ preventScroll: true });
  }
}

function setConn(state, text) {
  const conn = $('conn');
  conn.hidden = !state;
  conn.dataset.state = state || '';
  conn.textContent = text || '';
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
}

/** A confirmation dialog; resolves to true when confirmed. */
function confirmAction({ title, text, ok }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const done = (value) => {
      $('confirm-ok').onclick = null;
      $('confirm-cancel').onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(value);
    };
    $('confirm-ok').onclick = () => done(true);
    $('confirm-cancel').onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

function readToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get('t');
  if (!token) return null;
  let role = null;
  try {
    // Only to know whether to ask for the attestation: the server checks
    // the token; nothing here trusts it.
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    role = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '='))).role || null;
  } catch {
    role = null;
  }
  return { token, role };
}

function stopLocalMedia() {
  app.stopMeter();
  app.stopMeter = () => {};
  for (const track of app.stream ? app.stream.getTracks() : []) track.stop();
  if (app.call) {
    for (const t of [app.call.audioTrack, app.call.videoTrack, app.call.screenTrack]) if (t) t.stop();
  }
  app.stream = null;
  for (const v of document.querySelectorAll('video')) v.srcObject = null;
}

// ---------------------------------------------------------------- pre-call

function setMeter(level) {
  const pct = Math.round(level * 100);
  $('meter-fill').style.transform = `scaleX(${level.toFixed(3)})`;
  const meter = $('meter');
  if (Math.abs(Number(meter.getAttribute('aria-valuenow')) - pct) >= 10) meter.setAttribute('aria-valuenow', String(pct));
  if (level > 0.35) $('mic-hint').textContent = 'We can hear you.';
}

async function startPreview() {
  $('preview-off').hidden = false;
  $('preview-off').textContent = 'If your browser asks, choose Allow to use your camera and microphone.';
  app.stopMeter();
  for (const track of app.stream ? app.stream.getTracks() : []) track.stop();
  const { stream, error } = await openMedia({ cameraId: app.cameraId, micId: app.micId, wantVideo: app.cameraWanted });
  app.stream = stream;
  const problem = $('media-problem');
  problem.hidden = !error || (stream && stream.getAudioTracks().length && stream.getVideoTracks().length);
  problem.textContent = explainMediaError(error);
  const hasVideo = !!(stream && stream.getVideoTracks().length);
  $('preview').srcObject = hasVideo ? stream : null;
  $('preview-off').hidden = hasVideo;
  $('preview-off').textContent = 'No camera picture';
  const audio = stream && stream.getAudioTracks()[0];
  app.stopMeter = watchLevel(audio, setMeter);
  if (stream) {
    const v = stream.getVideoTracks()[0];
    const a = stream.getAudioTracks()[0];
    if (v) app.cameraId = v.getSettings().deviceId || app.cameraId;
    if (a) app.micId = a.getSettings().deviceId || app.micId;
  }
  await refreshDevices();
}

async function refreshDevices() {
  try {
    const { cameras, mics, speakers } = await listDevices();
    fillSelect($('pick-camera'), cameras, 'Camera', app.cameraId);
    fillSelect($('pick-mic'), mics, 'Microphone', app.micId);
    const canPick = 'setSinkId' in HTMLMediaElement.prototype;
    fillSelect($('pick-speaker'), canPick ? speakers : [], 'Speaker', app.speakerId);
    if (!canPick || !speakers.length) {
      $('pick-speaker').replaceChildren(el('option', { value: '', text: 'Your device’s default speaker' }));
      $('pick-speaker').disabled = true;
    }
  } catch {
    // enumerateDevices is best effort
  }
}

async function runConnectionTest() {
  const verdict = $('verdict');
  verdict.dataset.state = 'pending';
  $('verdict-text').textContent = 'Checking your connection…';
  $('verdict-detail').textContent = '';
  $('retest').disabled = true;
  const result = await connectionTest();
  verdict.dataset.state = result.verdict;
  $('verdict-text').textContent = result.text;
  $('verdict-detail').textContent = result.detail;
  $('retest').disabled = false;
}

function setupAttestation() {
  const select = $('state');
  for (const [code, name] of STATES) select.append(el('option', { value: code, text: name }));
  const form = $('attest');
  form.addEventListener('change', (e) => {
    if (e.target.name === 'private') $('private-note').hidden = e.target.value !== 'no';
    clearAttestErrors();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    join();
  });
}

function clearAttestErrors() {
  for (const id of ['state-error', 'home-error', 'private-error']) $(id).hidden = true;
  $('state').removeAttribute('aria-invalid');
}

/** The attestation, or null after showing what is missing. */
function readAttestation() {
  const form = $('attest');
  const state = $('state').value;
  const home = form.querySelector('input[name="at_home"]:checked');
  const priv = form.querySelector('input[name="private"]:checked');
  clearAttestErrors();
  let first = null;
  if (!state) {
    $('state-error').hidden = false;
    $('state').setAttribute('aria-invalid', 'true');
    first = first || $('state');
  }
  if (!home) {
    $('home-error').hidden = false;
    first = first || form.querySelector('input[name="at_home"]');
  }
  if (!priv) {
    $('private-error').hidden = false;
    first = first || form.querySelector('input[name="private"]');
  }
  if (first) {
    first.focus();
    announce('Please answer the questions before joining.');
    return null;
  }
  return { state, at_home: home.value === 'yes', private: priv.value === 'yes' };
}

async function showPrecheck() {
  showScreen('precheck');
  setConn(null);
  $('attest').hidden = !(app.role === 'patient' || app.role === 'partner');
  $('join').disabled = false;
  $('join').textContent = 'Join session';
  await startPreview();
  runConnectionTest();
}

// ---------------------------------------------------------------- joining

function join() {
  let attestation = null;
  if (!$('attest').hidden) {
    attestation = readAttestation();
    if (!attestation) return;
  }
  app.attestation = attestation;
  audioContext(); // a user gesture: let audio play
  $('join').disabled = true;
  $('join').textContent = 'Joining…';
  const stream = app.stream || new MediaStream();
  app.call = new Call({ token: app.token, attestation, emit: onCallEvent });
  app.call.setLocal({ audio: stream.getAudioTracks()[0], video: stream.getVideoTracks()[0] });
  app.call.connect();
  announce('Connecting…');
}

function onCallEvent(type, data) {
  const call = app.call;
  switch (type) {
    case 'waiting':
      return showWaiting(data);
    case 'joined':
      return enterCall(data);
    case 'reconnecting':
      setConn('reconnecting', 'Reconnecting…');
      // Said once, and once more if it takes long: not at every attempt.
      if (data.attempt === 0) announce('Connection lost. Reconnecting…', { sticky: true });
      else if (data.attempt === 6) announce('Still trying to reconnect. Please check your internet connection.', { sticky: true });
      return undefined;
    case 'denied':
      return showEnd(deniedMessage(data), data.code);
    case 'removed':
      return showEnd({ tone: 'stop', title: "You've been removed from the session", text: 'Your clinician removed you from this session, so you cannot rejoin it.', hint: 'If you need help, contact your clinic.' }, 'removed');
    case 'ended':
      return showEnd({ tone: 'done', title: 'The session has ended', text: 'Thank you for joining. You can close this page.', hint: '' }, 'ended');
    case 'replaced':
      return showEnd({ tone: 'info', title: 'This session is open somewhere else', text: 'You joined from another tab or device, so this page has stopped.', hint: '', action: 'here' }, 'replaced');
    case 'lobby':
      return updateLobby(data);
    case 'participants':
      if (data.joined) announce(`${data.joined.name} joined.`);
      if (data.left) {
        app.recentlyLeft.set(data.left.id, Date.now());
        announce(`${data.left.name} left.`);
      }
      renderTiles();
      renderPeople();
      return undefined;
    case 'remote':
      return renderTiles();
    case 'muted': {
      const what = data.kind === 'audio' ? 'microphone' : 'camera';
      announce(data.allow_unmute === false
        ? `Your clinician turned off your ${what}. You can turn it back on when they allow it.`
        : `Your clinician turned off your ${what}. You can turn it back on.`);
      return updateOwnControls();
    }
    case 'unmute_allowed':
      announce(`You can turn your ${data.kind === 'audio' ? 'microphone' : 'camera'} back on.`);
      return updateOwnControls();
    case 'breakout':
      return onBreakout(data);
    case 'session_ending': {
      const minutes = Math.round(data.seconds_left / 60);
      return announce(minutes >= 2 ? `The session ends in ${minutes} minutes.` : 'The session ends in about a minute.');
    }
    case 'server_error':
      if (data.code === 'not_allowed' && call.locked.audio) updateOwnControls();
      return undefined;
    default:
      return undefined;
  }
}

function showWaiting({ reason, reconnected }) {
  clearInterval(app.statsTimer);
  setConn('ok', 'Connected');
  const away = reason === 'clinician_away';
  const dropped = reconnected && app.wasInCall;
  $('waiting-title').textContent = away ? 'Your clinician will be back' : (dropped ? "You're back in the waiting room" : "You're in the waiting room");
  $('waiting-text').textContent = away
    ? "Your clinician's connection dropped. Your clinician will let you in again."
    : (dropped ? 'Your connection dropped for a moment. Your clinician will let you back in.' : 'Your clinician will let you in.');
  app.wasInCall = false;
  $('waiting-preview').srcObject = app.call.videoTrack ? new MediaStream([app.call.videoTrack]) : null;
  $('waiting-preview').hidden = !app.call.videoTrack;
  showScreen('waiting', { focus: app.screen !== 'waiting' });
  if (reconnected) announce('Reconnected. You are in the waiting room.');
  else announce(away ? "Your clinician's connection dropped. Please wait." : 'You are in the waiting room. Your clinician will let you in.');
}

function enterCall({ reconnected }) {
  const call = app.call;
  const firstTime = app.screen !== 'call';
  app.stopMeter();
  app.stopMeter = watchLevel(call.audioTrack, (l) => { app.localLevel = l; });
  if (!app.joinedAt) app.joinedAt = Date.now();
  app.wasInCall = true;
  $('session-title').textContent = call.session.title;
  document.title = `${call.session.title} – Tandem`;
  setConn('ok', 'Connected');
  const clinician = call.me.role === 'clinician';
  $('panel').hidden = !clinician;
  $('btn-share').hidden = !(clinician && navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  $('breakout-block').hidden = !(clinician && call.session.kind === 'group');
  document.body.classList.toggle('is-clinician', clinician);
  showScreen('call', { focus: firstTime });
  renderTiles();
  renderPeople();
  updateOwnControls();
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(pollStats, 1000);
  clearInterval(app.clockTimer);
  if (clinician) {
    tickClock();
    app.clockTimer = setInterval(tickClock, 1000);
  }
  if (reconnected) announce('Reconnected.');
  else {
    const others = [...call.participants.values()].map((p) => p.name);
    announce(others.length ? `You joined the session with ${others.join(' and ')}.` : 'You joined the session.');
  }
}

function showEnd(message, code) {
  clearInterval(app.statsTimer);
  clearInterval(app.clockTimer);
  if (app.call) app.call.finish();
  stopLocalMedia();
  for (const t of app.tiles.values()) t.audio?.remove();
  app.tiles.clear();
  $('grid').replaceChildren();
  setConn(null);
  $('message-title').textContent = message.title;
  $('message-text').textContent = message.text;
  $('message-hint').textContent = message.hint || '';
  $('message-mark').dataset.tone = message.tone || 'info';
  const action = $('message-action');
  const labels = { retry: 'Try again', knock: 'Ask to join again', rejoin: 'Rejoin', here: 'Use this page instead' };
  action.hidden = !message.action;
  action.textContent = labels[message.action] || '';
  document.body.dataset.end = code || '';
  clearTimeout(app.autoJoin);
  if (code === 'not_yet_open' && message.opensAt) {
    // Soon: keep the page open and join by ourselves when the link opens.
    const wait = Date.parse(message.opensAt) - Date.now();
    if (wait > 0 && wait < 30 * 60000) {
      $('message-hint').textContent = `Keep this page open: we'll connect you automatically at ${clockTime(message.opensAt)}.`;
      app.autoJoin = setTimeout(async () => {
        app.call = null;
        await showPrecheck();
        join();
      }, wait + 1500);
    }
  }
  showScreen('message');
  announce(`${message.title}. ${message.text}`, { sticky: true });
}

// ---------------------------------------------------------------- the grid

function roleName(role) {
  return ROLE_NAMES[role] || role;
}

function makeTile(key, { name, role, self = false, screen = false }) {
  const video = el('video', { autoplay: true, playsInline: true, muted: true });
  if (self) video.classList.add('mirror');
  const nameEl = el('span', { class: 'tile-name', text: self ? `You (${name})` : (screen ? `${name}'s screen` : name) });
  const roleEl = el('span', { class: 'tile-role', text: screen ? 'Screen' : roleName(role) });
  const badges = el('span', { class: 'tile-badges' });
  const caption = el('figcaption', {}, nameEl, roleEl, badges);
  const avatar = el('div', { class: 'avatar', 'aria-hidden': 'true', text: initials(name) });
  const root = el('figure', { class: `tile${screen ? ' screen-tile' : ''}${self ? ' self' : ''}`, 'data-key': key }, video, avatar, caption);
  return { root, video, badges, avatar, trackId: null, audio: null, audioIds: '' };
}

function setVideo(tile, track) {
  const id = track ? track.id : null;
  if (tile.trackId !== id) {
    tile.trackId = id;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
  }
  tile.root.classList.toggle('no-video', !track);
}

function setBadges(tile, { audio, video, speaking }) {
  const items = [];
  if (speaking) items.push(['speaking', 'Speaking']);
  if (!audio) items.push(['off', 'Microphone off']);
  if (!video) items.push(['off', 'Camera off']);
  const text = items.map((i) => i[1]).join(', ');
  if (tile.badges.dataset.text === text) return;
  tile.badges.dataset.text = text;
  tile.badges.replaceChildren(...items.map(([kind, label]) => el('span', { class: `badge ${kind}`, text: label })));
  tile.root.classList.toggle('speaking', !!speaking);
}

function renderTiles() {
  const call = app.call;
  if (!call || !call.me) return;
  const grid = $('grid');
  const want = [];

  // Ourselves first.
  let self = app.tiles.get('self');
  if (!self) {
    self = makeTile('self', { name: call.me.name, role: call.me.role, self: true });
    app.tiles.set('self', self);
  }
  setVideo(self, call.videoTrack);
  setBadges(self, { audio: call.audioOn, video: call.videoOn, speaking: call.audioOn && app.localLevel > 0.45 });
  want.push(self);

  const screens = [];
  for (const p of call.participants.values()) {
    let tile = app.tiles.get(p.id);
    if (!tile) {
      tile = makeTile(p.id, { name: p.name, role: p.role });
      app.tiles.set(p.id, tile);
    }
    const media = call.remote.get(p.id) || { audio: [], video: [] };
    const camera = media.video[0];
    setVideo(tile, p.video && camera ? camera.track : null);
    // Their voice.
    const audioIds = media.audio.map((a) => a.track.id).join(',');
    if (tile.audioIds !== audioIds) {
      tile.audioIds = audioIds;
      if (!tile.audio) {
        tile.audio = el('audio', { autoplay: true });
        document.body.append(tile.audio);
        if (app.speakerId && tile.audio.setSinkId) tile.audio.setSinkId(app.speakerId).catch(() => {});
      }
      tile.audio.srcObject = media.audio.length ? new MediaStream(media.audio.map((a) => a.track)) : null;
      if (media.audio.length) tile.audio.play().catch(() => {});
    }
    tile.root.dataset.role = p.role;
    want.push(tile);
    // Any further video of theirs is a shared screen.
    media.video.slice(1).forEach((v) => {
      const key = `${p.id}:screen:${v.mid}`;
      let st = app.tiles.get(key);
      if (!st) {
        st = makeTile(key, { name: p.name, role: p.role, screen: true });
        app.tiles.set(key, st);
        announce(`${p.name} is sharing their screen.`);
      }
      setVideo(st, v.track);
      screens.push(st);
    });
  }
  if (call.screenTrack) {
    let mine = app.tiles.get('self:screen');
    if (!mine) {
      mine = makeTile('self:screen', { name: 'You', role: call.me.role, screen: true });
      mine.root.querySelector('.tile-name').textContent = 'Your shared screen';
      app.tiles.set('self:screen', mine);
    }
    setVideo(mine, call.screenTrack);
    screens.push(mine);
  }

  // Others (and shared screens) fill the grid; our own picture floats in
  // a corner once someone else is here.
  const others = [...screens, ...want.slice(1)];
  const inGrid = others.length ? others : [self];
  const pip = $('pip');
  pip.hidden = !others.length;
  if (others.length && self.root.parentNode !== pip) pip.append(self.root);
  self.root.querySelector('.tile-name').textContent = others.length ? 'You' : `You (${call.me.name})`;
  const keep = new Set([self.root, ...others.map((t) => t.root)]);
  for (const [key, tile] of app.tiles) {
    if (!keep.has(tile.root)) {
      if (key.includes(':screen')) announce('Screen sharing stopped.');
      tile.root.remove();
      tile.audio?.remove();
      app.tiles.delete(key);
    }
  }
  inGrid.forEach((tile, i) => {
    if (grid.children[i] !== tile.root) grid.insertBefore(tile.root, grid.children[i] || null);
  });
  grid.dataset.count = String(Math.min(inGrid.length, 9));
  grid.classList.toggle('has-screen', screens.length > 0);
  const alone = call.participants.size === 0;
  $('alone-note').hidden = !alone;
  $('alone-note').textContent = call.me.role === 'clinician'
    ? 'No one else is here yet. People who arrive wait in the waiting room until you admit them.'
    : 'Waiting for others to join.';
  refreshParticipantBadges();
}

function refreshParticipantBadges(levels = new Map()) {
  const call = app.call;
  for (const p of call.participants.values()) {
    const tile = app.tiles.get(p.id);
    if (!tile) continue;
    const level = levels.get(p.id)?.level || 0;
    setBadges(tile, { audio: p.audio, video: p.video, speaking: p.audio && level > 0.02 });
  }
}

async function pollStats() {
  const call = app.call;
  if (!call || app.screen !== 'call') return;
  let stats = new Map();
  try {
    stats = await call.stats();
  } catch {
    return;
  }
  refreshParticipantBadges(stats);
  const self = app.tiles.get('self');
  if (self) setBadges(self, { audio: call.audioOn, video: call.videoOn, speaking: call.audioOn && app.localLevel > 0.45 });
  app.quality = stats;
  if (call.me.role === 'clinician') renderQuality();
}

// ---------------------------------------------------------------- own controls

function updateOwnControls() {
  const call = app.call;
  if (!call) return;
  const mic = $('btn-mic');
  mic.textContent = call.audioOn ? 'Mute' : 'Unmute';
  mic.disabled = !call.audioOn && (call.locked.audio || !call.audioTrack);
  mic.classList.toggle('off', !call.audioOn);
  const cam = $('btn-cam');
  cam.textContent = call.videoOn ? 'Turn camera off' : 'Turn camera on';
  cam.disabled = !call.videoOn && call.locked.video;
  cam.classList.toggle('off', !call.videoOn);
  const notes = [];
  if (call.locked.audio && !call.audioOn) notes.push('Your clinician has muted you. You can unmute when they allow it.');
  if (call.locked.video && !call.videoOn) notes.push('Your clinician has turned off your camera for now.');
  $('mute-note').hidden = !notes.length;
  $('mute-note').textContent = notes.join(' ');
  $('btn-share').textContent = call.screenTrack ? 'Stop sharing' : 'Share screen';
  renderTiles();
}

async function toggleMic() {
  const call = app.call;
  const on = !call.audioOn;
  if (call.setMic(on)) announce(on ? 'Your microphone is on.' : 'You are muted.');
  updateOwnControls();
}

async function toggleCamera() {
  const call = app.call;
  const cam = $('btn-cam');
  cam.disabled = true;
  try {
    if (call.videoOn) {
      await call.setCamera(null);
      announce('Your camera is off.');
    } else {
      const track = await openCamera(app.cameraId);
      await call.setCamera(track);
      announce('Your camera is on.');
    }
    call.sendMedia();
  } catch (e) {
    announce(explainMediaError(e));
  }
  updateOwnControls();
}

async function toggleShare() {
  const call = app.call;
  if (call.screenTrack) {
    await call.stopScreen();
    announce('You stopped sharing your screen.');
    updateOwnControls();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    track.addEventListener('ended', async () => {
      if (call.screenTrack === track) {
        await call.stopScreen();
        announce('You stopped sharing your screen.');
        updateOwnControls();
      }
    });
    await call.startScreen(track);
    announce('You are sharing your screen with everyone.');
  } catch {
    announce('Screen sharing did not start.');
  }
  updateOwnControls();
}

function leave() {
  const call = app.call;
  call.leave();
  showEnd({ tone: 'done', title: "You've left the session", text: 'You can close this page, or rejoin if you left by mistake.', hint: '', action: 'rejoin' }, 'left');
}

async function endSession() {
  const ok = await confirmAction({
    title: 'End the session for everyone?',
    text: 'Everyone will be disconnected and no one can rejoin this session.',
    ok: 'End session',
  });
  if (ok) app.call.end();
}

// ---------------------------------------------------------------- clinician panel

function personRow(key, person, buttons, extra) {
  const nameId = `n-${key}`;
  const li = el('li', { class: 'person', 'data-id': person.id });
  const who = el('div', { class: 'who' },
    el('span', { class: 'person-name', id: nameId, text: person.name }),
    el('span', { class: 'person-role', text: roleName(person.role) }),
    extra || null);
  const actions = el('div', { class: 'actions' });
  for (const b of buttons) {
    const button = el('button', { type: 'button', class: `btn small ${b.cls || 'secondary'}`, text: b.label, 'aria-describedby': nameId, 'data-action': b.action });
    button.addEventListener('click', b.onClick);
    actions.append(button);
  }
  li.append(who, actions);
  return li;
}

let rowSeq = 0;
const rowKeys = new Map();
function rowKey(id) {
  if (!rowKeys.has(id)) rowKeys.set(id, String((rowSeq += 1)));
  return rowKeys.get(id);
}

/** Replaces a list's rows, keeping keyboard focus on the same person and action. */
function replaceRows(list, rows, fallback) {
  const active = document.activeElement;
  const inList = active && list.contains(active);
  const focusId = inList ? active.closest('li')?.dataset.id : null;
  const focusAction = inList ? active.dataset.action : null;
  const oldIndex = inList ? [...list.children].indexOf(active.closest('li')) : -1;
  list.replaceChildren(...rows);
  if (!inList) return;
  const same = [...list.children].find((li) => li.dataset.id === focusId);
  const target = (same && same.querySelector(`[data-action="${focusAction}"]`))
    || list.children[Math.min(oldIndex, list.children.length - 1)]?.querySelector('button')
    || fallback;
  if (target) target.focus();
}

function updateLobby(waiting) {
  const before = new Set(app.lobby.map((w) => w.id));
  app.lobby = waiting;
  const arrivals = waiting.filter((w) => !before.has(w.id));
  if (arrivals.length) announce(`${arrivals.map((w) => w.name).join(' and ')} ${arrivals.length > 1 ? 'are' : 'is'} waiting to join.`);
  renderLobby();
}

function renderLobby() {
  const list = $('waiting-list');
  const rows = app.lobby.map((w) => {
    const left = app.recentlyLeft.get(w.id);
    const back = left && Date.now() - left < 15 * 60000;
    return personRow(rowKey(`w-${w.id}`), w, [
      { label: 'Admit', action: 'admit', cls: 'primary', onClick: () => { app.call.admit(w.id); announce(`Admitting ${w.name}.`); } },
      { label: 'Deny', action: 'deny', cls: 'secondary', onClick: () => denyPerson(w) },
    ], el('span', { class: 'person-meta', text: back ? `Was in the session · back at ${clockTime(w.since)}` : `Waiting since ${clockTime(w.since)}` }));
  });
  replaceRows(list, rows, $('btn-admit-all').disabled ? $('waiting-h') : $('btn-admit-all'));
  $('waiting-count').textContent = String(app.lobby.length);
  $('waiting-empty').hidden = app.lobby.length > 0;
  $('btn-admit-all').disabled = app.lobby.length === 0;
  document.title = `${app.lobby.length ? `(${app.lobby.length} waiting) ` : ''}${app.call?.session?.title || 'Tandem'} – Tandem`;
}

async function denyPerson(w) {
  const ok = await confirmAction({ title: `Deny ${w.name}?`, text: 'They will see that you did not let them in. They can ask to join again.', ok: 'Deny' });
  if (ok) {
    app.call.deny(w.id);
    announce(`${w.name} was not let in.`);
  }
}

async function removePerson(p) {
  const ok = await confirmAction({ title: `Remove ${p.name}?`, text: 'They will leave the session at once and cannot rejoin it, with any link.', ok: 'Remove' });
  if (ok) {
    app.call.remove(p.id);
    announce(`${p.name} was removed from the session.`);
  }
}

function mutePerson(p) {
  const allow = $('let-unmute').checked;
  app.call.mute(p.id, 'audio', allow);
  if (!allow) app.lockedByMe.add(p.id);
  announce(`You muted ${p.name}.`);
}

function allowUnmute(p) {
  app.call.allowUnmute(p.id, 'audio');
  app.lockedByMe.delete(p.id);
  announce(`${p.name} can unmute again.`);
  renderPeople();
}

function renderPeople() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  const people = [...call.participants.values()];
  const rows = people.map((p) => {
    const buttons = [];
    if (p.audio) buttons.push({ label: 'Mute', action: 'mute', onClick: () => mutePerson(p) });
    else if (app.lockedByMe.has(p.id)) buttons.push({ label: 'Allow unmute', action: 'allow', onClick: () => allowUnmute(p) });
    buttons.push({ label: 'Remove', action: 'remove', cls: 'danger-quiet', onClick: () => removePerson(p) });
    const state = [p.audio ? 'Mic on' : 'Mic off', p.video ? 'Camera on' : 'Camera off'].join(' · ');
    const quality = el('span', { class: 'quality', 'data-quality': 'unknown' },
      el('span', { class: 'quality-dot', 'aria-hidden': 'true' }),
      el('span', { class: 'quality-text', text: 'Measuring connection…' }));
    return personRow(rowKey(`p-${p.id}`), p, buttons, el('span', { class: 'person-meta' }, el('span', { text: state }), quality));
  });
  replaceRows($('people-list'), rows, $('people-h'));
  $('people-empty').hidden = people.length > 0;
  for (const p of [...app.lockedByMe]) if (!call.participants.has(p)) app.lockedByMe.delete(p);
  renderQuality();
}

function renderQuality() {
  for (const li of $('people-list').children) {
    const q = app.quality.get(li.dataset.id);
    const box = li.querySelector('.quality');
    if (!box) continue;
    let grade = 'unknown';
    let text = 'Measuring connection…';
    if (q) {
      const kbps = q.kbps >= 1000 ? `${(q.kbps / 1000).toFixed(1)} Mbps` : `${Math.round(q.kbps)} kbps`;
      if (!q.measured) {
        text = 'Measuring connection…';
      } else if (q.lossPct == null || !q.receiving) {
        grade = q.kbps > 8 ? 'good' : 'unknown';
        text = q.kbps > 8 ? `Audio only · ${kbps}` : 'No media yet';
      } else {
        grade = q.lossPct < 2 ? 'good' : q.lossPct < 8 ? 'fair' : 'poor';
        const label = { good: 'Good', fair: 'Fair', poor: 'Poor' }[grade];
        text = `${label} · ${kbps} · ${q.lossPct.toFixed(1)}% loss`;
      }
    }
    box.dataset.quality = grade;
    const t = box.querySelector('.quality-text');
    if (t.textContent !== text) t.textContent = text;
  }
}

function tickClock() {
  const call = app.call;
  if (!call?.session) return;
  const startMs = Date.parse(call.session.starts_at);
  const endMs = Date.parse(call.session.ends_at);
  const now = Date.now();
  const two = (n) => String(n).padStart(2, '0');
  const fmt = (secs) => {
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    return h ? `${h}:${two(m)}:${two(secs % 60)}` : `${m}:${two(secs % 60)}`;
  };
  if (now < startMs) {
    $('timer').textContent = fmt(Math.ceil((startMs - now) / 1000));
    $('timer-note').textContent = `until the scheduled start (${clockTime(call.session.starts_at)})`;
    return;
  }
  $('timer').textContent = fmt(Math.floor((now - startMs) / 1000));
  const left = Math.ceil((endMs - now) / 60000);
  $('timer-note').textContent = left > 0
    ? `elapsed · ends ${clockTime(call.session.ends_at)} (${left} min left)`
    : `elapsed · due to end ${clockTime(call.session.ends_at)}`;
}

function onBreakout(m) {
  if (m.active) app.breakouts.set(m.household, m);
  else app.breakouts.delete(m.household);
  const note = $('breakout-note');
  const active = [...app.breakouts.values()];
  note.hidden = !active.length;
  note.textContent = active.map((b) => `Household ${b.household} is in a private breakout${b.with_clinician ? ' with the clinician' : ''}.`).join(' ');
  announce(m.active ? `A breakout room started for household ${m.household}.` : `The breakout for household ${m.household} ended.`);
  const list = $('breakout-list');
  list.replaceChildren(...active.map((b) => {
    const li = el('li', { class: 'person', 'data-id': b.household });
    const nameId = `b-${rowKey(`b-${b.household}`)}`;
    li.append(el('div', { class: 'who' }, el('span', { class: 'person-name', id: nameId, text: `Household ${b.household}` }),
      el('span', { class: 'person-meta', text: b.with_clinician ? 'With you' : 'On their own' })));
    const end = el('button', { type: 'button', class: 'btn small secondary', text: 'End breakout', 'aria-describedby': nameId });
    end.addEventListener('click', () => app.call.endBreakout(b.household));
    li.append(el('div', { class: 'actions' }, end));
    return li;
  }));
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('join').addEventListener('click', join);
  $('retest').addEventListener('click', runConnectionTest);
  $('pick-camera').addEventListener('change', (e) => { app.cameraId = e.target.value; startPreview(); });
  $('pick-mic').addEventListener('change', (e) => { app.micId = e.target.value; startPreview(); });
  $('pick-speaker').addEventListener('change', (e) => {
    app.speakerId = e.target.value;
    for (const t of app.tiles.values()) if (t.audio?.setSinkId) t.audio.setSinkId(app.speakerId).catch(() => {});
  });
  $('test-sound').addEventListener('click', () => playTestSound(app.speakerId));
  $('btn-mic').addEventListener('click', toggleMic);
  $('btn-cam').addEventListener('click', toggleCamera);
  $('btn-share').addEventListener('click', toggleShare);
  $('btn-leave').addEventListener('click', leave);
  $('waiting-leave').addEventListener('click', leave);
  $('btn-end').addEventListener('click', endSession);
  $('btn-admit-all').addEventListener('click', () => { app.call.admitAll(); announce('Admitting everyone who is waiting.'); });
  $('breakout-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const household = $('household').value.trim();
    if (!household) return;
    app.call.breakout(household, $('with-me').checked);
    $('household').value = '';
  });
  $('message-action').addEventListener('click', () => {
    clearTimeout(app.autoJoin);
    app.call = null;
    app.tiles.clear();
    app.lobby = [];
    showPrecheck();
  });
  navigator.mediaDevices?.addEventListener?.('devicechange', refreshDevices);
  // Browsers start audio only after a gesture.
  document.addEventListener('pointerdown', () => audioContext(), { once: true });
}

function start() {
  wire();
  setupAttestation();
  const link = readToken();
  if (!link) {
    $('screen-start').querySelector('h1').textContent = 'This link is incomplete';
    $('status').textContent = 'Please open the full link your clinic sent you. Everything after the # is needed.';
    return;
  }
  if (!window.isSecureContext || !navigator.mediaDevices) {
    $('screen-start').querySelector('h1').textContent = "This browser can't join video sessions";
    $('status').textContent = 'Please open the link in a current version of Chrome, Edge, Firefox or Safari.';
    return;
  }
  app.token = link.token;
  app.role = link.role;
  $('status').textContent = 'Your personal link is complete.';
  showPrecheck();
}

start();
