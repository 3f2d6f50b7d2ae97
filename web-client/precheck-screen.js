// The pre-call check screen: the camera preview and level meter, the
// device pickers, the connection verdict, the attestation (patients and
// partners), and Join, which starts the Call. The media and connection
// checks themselves are precheck.js.

import { Call } from './session.js';
import {
  openMedia, listDevices, fillSelect, watchLevel, playTestSound, connectionTest, audioContext,
} from './precheck.js';
import { explainMediaError, CONNECTION, DEVICES, PRECHECK, STATES } from './messages.js';
import { app, showScreen } from './state.js';
import { $, el, announce, setConn } from './ui.js';
import { onCallEvent } from './call-events.js';

function setMeter(level) {
  const pct = Math.round(level * 100);
  $('meter-fill').style.transform = `scaleX(${level.toFixed(3)})`;
  const meter = $('meter');
  if (Math.abs(Number(meter.getAttribute('aria-valuenow')) - pct) >= 10) meter.setAttribute('aria-valuenow', String(pct));
  if (level > 0.35) $('mic-hint').textContent = PRECHECK.hearYou;
}

/**
 * The preview being opened (or the last one). Join waits for it: a person
 * who clicks "Join session" while the camera and microphone are still
 * starting (a slow machine, a fast click) must not join without them, as
 * nothing would add them to the call afterwards.
 */
let previewing = Promise.resolve();

function startPreview() {
  previewing = openPreview();
  return previewing;
}

async function openPreview() {
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

export function setupAttestation() {
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

/** The screen's entry (state.js `goTo('precheck')`). */
export async function showPrecheck() {
  showScreen('precheck');
  setConn(null);
  $('attest').hidden = !(app.role === 'patient' || app.role === 'partner');
  $('join').disabled = false;
  $('join').textContent = PRECHECK.join;
  await startPreview();
  runConnectionTest();
}

/** Join: the attestation if asked for, then the Call (session.js) starts. */
export async function join() {
  let attestation = null;
  if (!$('attest').hidden) {
    attestation = readAttestation();
    if (!attestation) return;
  }
  app.attestation = attestation;
  audioContext(); // a user gesture: let audio play
  $('join').disabled = true;
  $('join').textContent = PRECHECK.joining;
  await previewing.catch(() => {});
  const stream = app.stream || new MediaStream();
  app.call = new Call({ token: app.token, attestation, emit: onCallEvent });
  app.call.setLocal({ audio: stream.getAudioTracks()[0], video: stream.getVideoTracks()[0] });
  app.call.connect();
  announce(PRECHECK.connecting);
}

export function wirePrecheck() {
  $('join').addEventListener('click', join);
  $('retest').addEventListener('click', runConnectionTest);
  $('pick-camera').addEventListener('change', (e) => { app.cameraId = e.target.value; startPreview(); });
  $('pick-mic').addEventListener('change', (e) => { app.micId = e.target.value; startPreview(); });
  $('pick-speaker').addEventListener('change', (e) => {
    app.speakerId = e.target.value;
    for (const t of app.tiles.values()) if (t.audio?.setSinkId) t.audio.setSinkId(app.speakerId).catch(() => {});
  });
  $('test-sound').addEventListener('click', () => playTestSound(app.speakerId));
  navigator.mediaDevices?.addEventListener?.('devicechange', refreshDevices);
}
