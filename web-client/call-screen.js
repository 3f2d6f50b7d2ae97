// The call screen: entering it (after admission or a reconnect), the
// once-a-second getStats poll, and our own controls (microphone, camera,
// screen share, leave). The tiles are call-grid.js; the clinician's side
// panel is clinician-panel.js.

import { openCamera, watchLevel } from './precheck.js';
import { explainMediaError, CALL, CONN, END } from './messages.js';
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
  const self = app.tiles.get('self');
  if (self) setBadges(self, { audio: call.audioOn, video: call.videoOn, speaking: call.audioOn && app.localLevel > 0.45 });
  app.quality = stats;
  if (call.me.role === 'clinician') renderQuality();
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

/** Leave (from the call or the waiting room): the end screen, with Rejoin. */
export function leave() {
  const call = app.call;
  call.leave();
  goTo('message', END.left, 'left');
}

export function wireCall() {
  $('btn-mic').addEventListener('click', toggleMic);
  $('btn-cam').addEventListener('click', toggleCamera);
  $('btn-share').addEventListener('click', toggleShare);
  $('btn-leave').addEventListener('click', leave);
}
