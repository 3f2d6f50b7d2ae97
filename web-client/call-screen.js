// The call screen: entering it (after admission or a reconnect), the
// once-a-second getStats poll, and our own controls (microphone, camera,
// screen share, leave). The tiles are call-grid.js; the clinician's side
// panel is clinician-panel.js.

import { openCamera, openMic, listDevices, fillSelect, watchLevel } from './precheck.js';
import { explainMediaError, CALL, CONN, DEVICES, E2EE, END } from './messages.js';
import { app, goTo, showScreen } from './state.js';
import { $, announce, setConn } from './ui.js';
import { renderTiles, refreshParticipantBadges, setBadges } from './call-grid.js';
import { renderPeople, renderQuality, tickClock } from './clinician-panel.js';

/** The screen's entry (state.js `goTo('call', {reconnected})`). */
export function enterCall({ reconnected }) {
  const call = app.call;
  const firstTime = app.screen !== 'call';
  app.stopMeter();
  app.stopMeter = watchLevel(call.audioTrack, (l) => { app.localLevel = l; });
  if (!app.joinedAt) app.joinedAt = Date.now();
  for (const id of call.participants.keys()) if (!app.inRoomSince.has(id)) app.inRoomSince.set(id, Date.now());
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
  renderOwnBreakout();
  const self = app.tiles.get('self');
  if (self) setBadges(self, { audio: call.audioOn, video: call.videoOn, speaking: call.audioOn && app.localLevel > 0.45 });
  app.quality = stats;
  for (const [id, q] of stats) if (q.kbps > 0) app.heardFrom.add(id);
  if (call.me.role === 'clinician') renderQuality();
}

/**
 * The room's encryption, visible to everyone without opening anything:
 * "End-to-end encrypted" or "Encrypted in transit", and while end-to-end
 * encrypted, the safety code the clinician reads aloud.
 */
export function renderE2ee(state) {
  const mode = $('e2ee-mode');
  const code = $('e2ee-code');
  const bar = $('e2ee-bar');
  bar.hidden = false;
  // Our own current key id (public: every frame's SFrame header has it).
  bar.dataset.keyId = state.keyId ?? '';
  mode.textContent = state.active ? E2EE.on : E2EE.transit;
  mode.title = state.active ? E2EE.onHint : E2EE.transitHint;
  mode.dataset.on = String(!!state.active);
  // Shown, not announced: it changes with every arrival and departure,
  // whose own announcements must not be drowned out.
  const shown = state.active && state.code;
  code.hidden = !shown;
  code.dataset.code = shown ? state.code : '';
  code.textContent = shown ? E2EE.code(state.code) : '';
}

function toggleHand() {
  const call = app.call;
  if (call.handRaised) {
    call.lowerHand();
    announce(CALL.youLowered);
  } else {
    call.raiseHand();
    announce(CALL.youRaised);
  }
}

// ---------------------------------------------------------------- our own breakout

/** Our couple's breakout started or ended (the clinician's page has its panel instead). */
export function onOwnBreakout(m) {
  app.ownBreakout = m.active ? m : null;
  $('breakout-said').hidden = true;
  announce(m.active ? CALL.inBreakout(m.with_clinician) : CALL.backInGroup);
  renderOwnBreakout();
}

export function onBreakoutEnding() {
  announce(CALL.breakoutOneMinute, { sticky: true });
  renderOwnBreakout();
}

export function onBreakoutMessage(m) {
  const text = CALL.messageFrom(m.from, m.text);
  const said = $('breakout-said');
  said.textContent = text;
  said.hidden = false;
  announce(text, { sticky: true });
}

/** The banner with the countdown, once a second. */
export function renderOwnBreakout() {
  const b = app.ownBreakout;
  $('breakout-note').hidden = !b;
  if (!b) return;
  $('breakout-where').textContent = CALL.inBreakout(b.with_clinician);
  let left = '';
  if (b.ends_at) {
    const secs = Math.max(0, Math.ceil((Date.parse(b.ends_at) - Date.now()) / 1000));
    left = CALL.backIn(`${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`);
  }
  if ($('breakout-left').textContent !== left) $('breakout-left').textContent = left;
}

export function updateOwnControls() {
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
  const hand = $('btn-hand');
  // Its name says what it does ("Raise hand" / "Lower hand"), so it is
  // not also a pressed toggle.
  hand.textContent = call.handRaised ? CALL.lowerHand : CALL.raiseHand;
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
    // Text and detail over motion, where the browser knows the hint
    // (Firefox has no contentHint).
    if ('contentHint' in track) track.contentHint = 'detail';
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

/** Leave (from the call or the waiting room): the end screen, with Rejoin. */
export function leave() {
  const call = app.call;
  call.leave();
  goTo('message', END.left, 'left');
}

// ---------------------------------------------------------------- devices during the call

const canPickSpeaker = () => 'setSinkId' in HTMLMediaElement.prototype;
const chosenName = (select) => select.selectedOptions[0]?.textContent || '';

/** Fills the call's device pickers with what is plugged in now. */
async function refreshCallDevices() {
  const call = app.call;
  if (!call) return;
  try {
    const { cameras, mics, speakers } = await listDevices();
    const camId = call.videoTrack?.getSettings().deviceId || app.cameraId;
    const micId = call.audioTrack?.getSettings().deviceId || app.micId;
    fillSelect($('call-camera'), cameras, DEVICES.camera, camId);
    fillSelect($('call-mic'), mics, DEVICES.mic, micId);
    const speakerOk = canPickSpeaker() && speakers.length > 0;
    $('call-speaker').hidden = !speakerOk;
    $('call-speaker-label').hidden = !speakerOk;
    if (speakerOk) fillSelect($('call-speaker'), speakers, DEVICES.speaker, app.speakerId);
  } catch {
    // enumerateDevices is best effort
  }
}

async function toggleDevices() {
  const button = $('btn-devices');
  const open = button.getAttribute('aria-expanded') !== 'true';
  button.setAttribute('aria-expanded', String(open));
  button.textContent = open ? CALL.hideDevices : CALL.devices;
  $('call-devices').hidden = !open;
  if (open) {
    await refreshCallDevices();
    $('call-camera').focus();
  }
}

async function switchCamera(e) {
  const call = app.call;
  const select = e.target;
  app.cameraId = select.value;
  // Camera off: the choice is used when it is turned on again.
  if (!call.videoOn) return;
  try {
    const track = await openCamera(app.cameraId);
    await call.setCamera(track);
    announce(CALL.cameraSwitched(chosenName(select)));
  } catch (err) {
    announce(explainMediaError(err), { sticky: true });
    await refreshCallDevices();
  }
  updateOwnControls();
}

async function switchMic(e) {
  const call = app.call;
  const select = e.target;
  app.micId = select.value;
  try {
    const track = await openMic(app.micId);
    await call.setMicTrack(track);
    app.stopMeter();
    app.stopMeter = watchLevel(track, (l) => { app.localLevel = l; });
    announce(CALL.micSwitched(chosenName(select)));
  } catch (err) {
    announce(explainMediaError(err), { sticky: true });
    await refreshCallDevices();
  }
}

async function switchSpeaker(e) {
  app.speakerId = e.target.value;
  await Promise.all([...app.tiles.values()].map((t) => t.audio?.setSinkId?.(app.speakerId).catch(() => {})));
  announce(CALL.speakerSwitched(chosenName(e.target)));
}

export function wireCall() {
  $('btn-devices').textContent = CALL.devices;
  $('call-camera-label').textContent = CALL.pickCamera;
  $('call-mic-label').textContent = CALL.pickMic;
  $('call-speaker-label').textContent = CALL.pickSpeaker;
  $('btn-devices').addEventListener('click', toggleDevices);
  $('call-camera').addEventListener('change', switchCamera);
  $('call-mic').addEventListener('change', switchMic);
  $('call-speaker').addEventListener('change', switchSpeaker);
  navigator.mediaDevices?.addEventListener?.('devicechange', () => {
    if (!$('call-devices').hidden) refreshCallDevices();
  });
  $('btn-mic').addEventListener('click', toggleMic);
  $('btn-cam').addEventListener('click', toggleCamera);
  $('btn-share').addEventListener('click', toggleShare);
  $('btn-hand').addEventListener('click', toggleHand);
  $('btn-leave').addEventListener('click', leave);
}
