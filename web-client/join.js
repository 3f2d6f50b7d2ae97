// The Tandem browser client: pre-call check, attestation, waiting room,
// the call, the clinician's panel, and the messages at the end. Every word
// it shows or announces is in messages.js.
// ES modules, no framework, no inline script or style (the server's CSP).

import { Call } from './session.js';
import {
  openMedia, openCamera, listDevices, fillSelect, watchLevel,
  playTestSound, connectionTest, audioContext,
} from './precheck.js';
import {
  deniedMessage, explainMediaError, roleName, STATES,
  START, DEVICES, PRECHECK, CONNECTION, CONN, WAITING, CALL, PANEL, END,
} from './messages.js';

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
  if (level > 0.35) $('mic-hint').textContent = PRECHECK.hearYou;
}

async function startPreview() {
  $('preview-off').hidden = false;
  $('preview-off').textContent = PRECHECK.allowPrompt;
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
  $('preview-off').textContent = PRECHECK.noPicture;
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
    fillSelect($('pick-camera'), cameras, DEVICES.camera, app.cameraId);
    fillSelect($('pick-mic'), mics, DEVICES.mic, app.micId);
    const canPick = 'setSinkId' in HTMLMediaElement.prototype;
    fillSelect($('pick-speaker'), canPick ? speakers : [], DEVICES.speaker, app.speakerId);
    if (!canPick || !speakers.length) {
      $('pick-speaker').replaceChildren(el('option', { value: '', text: DEVICES.speaker.default }));
      $('pick-speaker').disabled = true;
    }
  } catch {
    // enumerateDevices is best effort
  }
}

async function runConnectionTest() {
  const verdict = $('verdict');
  verdict.dataset.state = 'pending';
  $('verdict-text').textContent = CONNECTION.checking;
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
    announce(PRECHECK.answerFirst);
    return null;
  }
  return { state, at_home: home.value === 'yes', private: priv.value === 'yes' };
}

async function showPrecheck() {
  showScreen('precheck');
  setConn(null);
  $('attest').hidden = !(app.role === 'patient' || app.role === 'partner');
  $('join').disabled = false;
  $('join').textContent = PRECHECK.join;
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
  $('join').textContent = PRECHECK.joining;
  const stream = app.stream || new MediaStream();
  app.call = new Call({ token: app.token, attestation, emit: onCallEvent });
  app.call.setLocal({ audio: stream.getAudioTracks()[0], video: stream.getVideoTracks()[0] });
  app.call.connect();
  announce(PRECHECK.connecting);
}

function onCallEvent(type, data) {
  const call = app.call;
  switch (type) {
    case 'waiting':
      return showWaiting(data);
    case 'joined':
      return enterCall(data);
    case 'reconnecting':
      setConn('reconnecting', CONN.reconnecting);
      // Said once, and once more if it takes long: not at every attempt.
      if (data.attempt === 0) announce(CONN.lost, { sticky: true });
      else if (data.attempt === 6) announce(CONN.stillLost, { sticky: true });
      return undefined;
    case 'denied':
      return showEnd(deniedMessage(data), data.code);
    case 'removed':
      return showEnd(END.removed, 'removed');
    case 'ended':
      return showEnd(END.ended, 'ended');
    case 'replaced':
      return showEnd(END.replaced, 'replaced');
    case 'lobby':
      return updateLobby(data);
    case 'participants':
      if (data.joined) announce(CALL.joined(data.joined.name));
      if (data.left) {
        app.recentlyLeft.set(data.left.id, Date.now());
        announce(CALL.left(data.left.name));
      }
      renderTiles();
      renderPeople();
      return undefined;
    case 'remote':
      return renderTiles();
    case 'muted': {
      announce(CALL.mutedByClinician(data.kind, data.allow_unmute));
      return updateOwnControls();
    }
    case 'unmute_allowed':
      announce(CALL.unmuteAllowed(data.kind));
      return updateOwnControls();
    case 'breakout':
      return onBreakout(data);
    case 'session_ending': {
      const minutes = Math.round(data.seconds_left / 60);
      return announce(CALL.endsIn(minutes));
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
  setConn('ok', CONN.connected);
  const away = reason === 'clinician_away';
  const dropped = reconnected && app.wasInCall;
  const which = away ? 'away' : (dropped ? 'back' : 'first');
  $('waiting-title').textContent = WAITING.title[which];
  $('waiting-text').textContent = WAITING.text[which];
  app.wasInCall = false;
  $('waiting-preview').srcObject = app.call.videoTrack ? new MediaStream([app.call.videoTrack]) : null;
  $('waiting-preview').hidden = !app.call.videoTrack;
  showScreen('waiting', { focus: app.screen !== 'waiting' });
  if (reconnected) announce(WAITING.reconnected);
  else announce(away ? WAITING.away : WAITING.arrived);
}

function enterCall({ reconnected }) {
  const call = app.call;
  const firstTime = app.screen !== 'call';
  app.stopMeter();
  app.stopMeter = watchLevel(call.audioTrack, (l) => { app.localLevel = l; });
  if (!app.joinedAt) app.joinedAt = Date.now();
  app.wasInCall = true;
  $('session-title').textContent = call.session.title;
  document.title = CALL.pageTitle(call.session.title);
  setConn('ok', CONN.connected);
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
  if (reconnected) announce(CALL.reconnected);
  else announce(CALL.joinedWith([...call.participants.values()].map((p) => p.name)));
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
  action.hidden = !message.action;
  action.textContent = END.actions[message.action] || '';
  document.body.dataset.end = code || '';
  clearTimeout(app.autoJoin);
  if (code === 'not_yet_open' && message.opensAt) {
    // Soon: keep the page open and join by ourselves when the link opens.
    const wait = Date.parse(message.opensAt) - Date.now();
    if (wait > 0 && wait < 30 * 60000) {
      $('message-hint').textContent = END.autoJoin(message.opensAt);
      app.autoJoin = setTimeout(async () => {
        app.call = null;
        await showPrecheck();
        join();
      }, wait + 1500);
    }
  }
  showScreen('message');
  announce(END.announce(message), { sticky: true });
}

// ---------------------------------------------------------------- the grid

function makeTile(key, { name, role, self = false, screen = false }) {
  const video = el('video', { autoplay: true, playsInline: true, muted: true });
  if (self) video.classList.add('mirror');
  const nameEl = el('span', { class: 'tile-name', text: self ? CALL.youNamed(name) : (screen ? CALL.screenOf(name) : name) });
  const roleEl = el('span', { class: 'tile-role', text: screen ? CALL.screen : roleName(role) });
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
  if (speaking) items.push(['speaking', CALL.badges.speaking]);
  if (!audio) items.push(['off', CALL.badges.micOff]);
  if (!video) items.push(['off', CALL.badges.cameraOff]);
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
        announce(CALL.sharing(p.name));
      }
      setVideo(st, v.track);
      screens.push(st);
    });
  }
  if (call.screenTrack) {
    let mine = app.tiles.get('self:screen');
    if (!mine) {
      mine = makeTile('self:screen', { name: CALL.you, role: call.me.role, screen: true });
      mine.root.querySelector('.tile-name').textContent = CALL.yourScreen;
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
  self.root.querySelector('.tile-name').textContent = others.length ? CALL.you : CALL.youNamed(call.me.name);
  const keep = new Set([self.root, ...others.map((t) => t.root)]);
  for (const [key, tile] of app.tiles) {
    if (!keep.has(tile.root)) {
      if (key.includes(':screen')) announce(CALL.sharingStopped);
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
  $('alone-note').textContent = call.me.role === 'clinician' ? CALL.alone.clinician : CALL.alone.other;
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
  mic.textContent = call.audioOn ? CALL.mute : CALL.unmute;
  mic.disabled = !call.audioOn && (call.locked.audio || !call.audioTrack);
  mic.classList.toggle('off', !call.audioOn);
  const cam = $('btn-cam');
  cam.textContent = call.videoOn ? CALL.cameraOff : CALL.cameraOn;
  cam.disabled = !call.videoOn && call.locked.video;
  cam.classList.toggle('off', !call.videoOn);
  const notes = [];
  if (call.locked.audio && !call.audioOn) notes.push(CALL.lockedMic);
  if (call.locked.video && !call.videoOn) notes.push(CALL.lockedCamera);
  $('mute-note').hidden = !notes.length;
  $('mute-note').textContent = notes.join(' ');
  $('btn-share').textContent = call.screenTrack ? CALL.stopShare : CALL.share;
  renderTiles();
}

async function toggleMic() {
  const call = app.call;
  const on = !call.audioOn;
  if (call.setMic(on)) announce(on ? CALL.micIsOn : CALL.micIsOff);
  updateOwnControls();
}

async function toggleCamera() {
  const call = app.call;
  const cam = $('btn-cam');
  cam.disabled = true;
  try {
    if (call.videoOn) {
      await call.setCamera(null);
      announce(CALL.camIsOff);
    } else {
      const track = await openCamera(app.cameraId);
      await call.setCamera(track);
      announce(CALL.camIsOn);
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
    announce(CALL.shareStopped);
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
        announce(CALL.shareStopped);
        updateOwnControls();
      }
    });
    await call.startScreen(track);
    announce(CALL.shareStarted);
  } catch {
    announce(CALL.shareFailed);
  }
  updateOwnControls();
}

function leave() {
  const call = app.call;
  call.leave();
  showEnd(END.left, 'left');
}

async function endSession() {
  const ok = await confirmAction(PANEL.endConfirm);
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
  if (arrivals.length) announce(PANEL.waiting(arrivals.map((w) => w.name)));
  renderLobby();
}

function renderLobby() {
  const list = $('waiting-list');
  const rows = app.lobby.map((w) => {
    const left = app.recentlyLeft.get(w.id);
    const back = left && Date.now() - left < 15 * 60000;
    return personRow(rowKey(`w-${w.id}`), w, [
      { label: PANEL.admit, action: 'admit', cls: 'primary', onClick: () => { app.call.admit(w.id); announce(PANEL.admitting(w.name)); } },
      { label: PANEL.deny, action: 'deny', cls: 'secondary', onClick: () => denyPerson(w) },
    ], el('span', { class: 'person-meta', text: back ? PANEL.backSince(w.since) : PANEL.waitingSince(w.since) }));
  });
  replaceRows(list, rows, $('btn-admit-all').disabled ? $('waiting-h') : $('btn-admit-all'));
  $('waiting-count').textContent = String(app.lobby.length);
  $('waiting-empty').hidden = app.lobby.length > 0;
  $('btn-admit-all').disabled = app.lobby.length === 0;
  document.title = PANEL.pageTitle(app.lobby.length, app.call?.session?.title);
}

async function denyPerson(w) {
  const ok = await confirmAction(PANEL.denyConfirm(w.name));
  if (ok) {
    app.call.deny(w.id);
    announce(PANEL.denied(w.name));
  }
}

async function removePerson(p) {
  const ok = await confirmAction(PANEL.removeConfirm(p.name));
  if (ok) {
    app.call.remove(p.id);
    announce(PANEL.removed(p.name));
  }
}

function mutePerson(p) {
  const allow = $('let-unmute').checked;
  app.call.mute(p.id, 'audio', allow);
  if (!allow) app.lockedByMe.add(p.id);
  announce(PANEL.muted(p.name));
}

function allowUnmute(p) {
  app.call.allowUnmute(p.id, 'audio');
  app.lockedByMe.delete(p.id);
  announce(PANEL.mayUnmute(p.name));
  renderPeople();
}

function renderPeople() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  const people = [...call.participants.values()];
  const rows = people.map((p) => {
    const buttons = [];
    if (p.audio) buttons.push({ label: PANEL.mute, action: 'mute', onClick: () => mutePerson(p) });
    else if (app.lockedByMe.has(p.id)) buttons.push({ label: PANEL.allowUnmute, action: 'allow', onClick: () => allowUnmute(p) });
    buttons.push({ label: PANEL.remove, action: 'remove', cls: 'danger-quiet', onClick: () => removePerson(p) });
    const state = PANEL.mediaState(p.audio, p.video);
    const quality = el('span', { class: 'quality', 'data-quality': 'unknown' },
      el('span', { class: 'quality-dot', 'aria-hidden': 'true' }),
      el('span', { class: 'quality-text', text: PANEL.measuring }));
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
    let text = PANEL.measuring;
    if (q) {
      const rate = PANEL.bitrate(q.kbps);
      if (!q.measured) {
        text = PANEL.measuring;
      } else if (q.lossPct == null || !q.receiving) {
        grade = q.kbps > 8 ? 'good' : 'unknown';
        text = q.kbps > 8 ? PANEL.audioOnly(rate) : PANEL.noMedia;
      } else {
        grade = q.lossPct < 2 ? 'good' : q.lossPct < 8 ? 'fair' : 'poor';
        text = PANEL.quality(PANEL.grades[grade], rate, q.lossPct);
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
    $('timer-note').textContent = PANEL.untilStart(call.session.starts_at);
    return;
  }
  $('timer').textContent = fmt(Math.floor((now - startMs) / 1000));
  const left = Math.ceil((endMs - now) / 60000);
  $('timer-note').textContent = PANEL.elapsed(call.session.ends_at, left);
}

function onBreakout(m) {
  if (m.active) app.breakouts.set(m.household, m);
  else app.breakouts.delete(m.household);
  const note = $('breakout-note');
  const active = [...app.breakouts.values()];
  note.hidden = !active.length;
  note.textContent = active.map(PANEL.inBreakout).join(' ');
  announce(m.active ? PANEL.breakoutStarted(m.household) : PANEL.breakoutEnded(m.household));
  const list = $('breakout-list');
  list.replaceChildren(...active.map((b) => {
    const li = el('li', { class: 'person', 'data-id': b.household });
    const nameId = `b-${rowKey(`b-${b.household}`)}`;
    li.append(el('div', { class: 'who' }, el('span', { class: 'person-name', id: nameId, text: PANEL.household(b.household) }),
      el('span', { class: 'person-meta', text: b.with_clinician ? PANEL.withYou : PANEL.onTheirOwn })));
    const end = el('button', { type: 'button', class: 'btn small secondary', text: PANEL.endBreakout, 'aria-describedby': nameId });
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
  $('btn-admit-all').addEventListener('click', () => { app.call.admitAll(); announce(PANEL.admittingAll); });
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
    $('screen-start').querySelector('h1').textContent = START.incomplete.title;
    $('status').textContent = START.incomplete.text;
    return;
  }
  if (!window.isSecureContext || !navigator.mediaDevices) {
    $('screen-start').querySelector('h1').textContent = START.unsupported.title;
    $('status').textContent = START.unsupported.text;
    return;
  }
  app.token = link.token;
  app.role = link.role;
  $('status').textContent = START.complete;
  showPrecheck();
}

start();
