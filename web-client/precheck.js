// The pre-call check: camera and microphone (with pickers and a level
// meter), the speaker, and a short connection test. Nothing here talks to
// the signaling socket: a join is only sent when the person chooses to join.
// Its words are in messages.js; the screen itself is precheck-screen.js.

import { CONNECTION } from './messages.js';

/**
 * What this browser lacks for a call, or null: a secure context,
 * RTCPeerConnection, getUserMedia, and the codecs the server forwards (Opus
 * and VP8 or H.264; it never transcodes), asked through
 * RTCRtpSender.getCapabilities where the browser has it. A key of
 * messages.js START.lacks.
 */
export function missingForCalls() {
  if (!window.isSecureContext) return 'insecure';
  if (typeof window.RTCPeerConnection !== 'function') return 'webrtc';
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') return 'camera';
  const sender = window.RTCRtpSender;
  if (sender && typeof sender.getCapabilities === 'function') {
    const mimes = (kind) => {
      try {
        return (sender.getCapabilities(kind)?.codecs || []).map((c) => c.mimeType.toLowerCase());
      } catch {
        return null;
      }
    };
    const audio = mimes('audio');
    const video = mimes('video');
    if (audio && video) {
      const opus = audio.includes('audio/opus');
      const picture = video.includes('video/vp8') || video.includes('video/h264');
      if (!opus || !picture) return 'codecs';
    }
  }
  return null;
}

/** Opens the chosen devices; falls back to whatever works. */
export async function openMedia({ cameraId, micId, wantVideo = true } = {}) {
  const audio = micId ? { deviceId: { exact: micId } } : true;
  const video = wantVideo
    ? { ...(cameraId ? { deviceId: { exact: cameraId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } }
    : false;
  const attempts = [{ audio, video }, { audio, video: false }, { audio: false, video }];
  let firstError = null;
  for (const constraints of attempts) {
    if (!constraints.audio && !constraints.video) continue;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      return { stream, error: firstError };
    } catch (e) {
      firstError = firstError || e;
      if (e && e.name === 'NotAllowedError') break;
    }
  }
  return { stream: null, error: firstError };
}

/** A microphone track (the chosen one), for a switch during the call. */
export async function openMic(micId) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: micId ? { deviceId: { exact: micId } } : true });
  return stream.getAudioTracks()[0];
}

export async function openCamera(cameraId) {
  const video = { ...(cameraId ? { deviceId: { exact: cameraId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } };
  const stream = await navigator.mediaDevices.getUserMedia({ video });
  return stream.getVideoTracks()[0];
}

export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: devices.filter((d) => d.kind === 'videoinput'),
    mics: devices.filter((d) => d.kind === 'audioinput'),
    speakers: devices.filter((d) => d.kind === 'audiooutput'),
  };
}

/** `names`: the picker's words (messages.js DEVICES). */
export function fillSelect(select, devices, names, current) {
  select.replaceChildren();
  devices.forEach((d, i) => {
    const option = document.createElement('option');
    option.value = d.deviceId;
    option.textContent = d.label || names.unnamed(i + 1);
    if (d.deviceId === current) option.selected = true;
    select.append(option);
  });
  if (!devices.length) {
    const option = document.createElement('option');
    option.value = '';
    option.textContent = names.none;
    select.append(option);
  }
  select.disabled = devices.length < 2;
}

let sharedContext = null;
export function audioContext() {
  if (!sharedContext) sharedContext = new AudioContext();
  if (sharedContext.state === 'suspended') sharedContext.resume().catch(() => {});
  return sharedContext;
}

/**
 * A level meter on an audio track: calls `onLevel(0..1)` about 20 times a
 * second until the returned function is called.
 */
export function watchLevel(track, onLevel) {
  if (!track) return () => {};
  const ctx = audioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    const rms = Math.sqrt(sum / data.length);
    // Speech sits around 0.02–0.2 RMS; a gentle log scale reads well.
    const level = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-6) + 60) / 50));
    onLevel(track.enabled ? level : 0);
    setTimeout(tick, 50);
  };
  tick();
  return () => {
    stopped = true;
    source.disconnect();
  };
}

/** A short, gentle tone on the chosen speaker. */
export async function playTestSound(sinkId) {
  const ctx = audioContext();
  const dest = ctx.createMediaStreamDestination();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.frequency.value = 523.25;
  gain.gain.setValueAtTime(0.0001, ctx.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.25, ctx.currentTime + 0.05);
  gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.9);
  osc.connect(gain).connect(dest);
  const audio = new Audio();
  audio.srcObject = dest.stream;
  if (sinkId && audio.setSinkId) await audio.setSinkId(sinkId).catch(() => {});
  await audio.play().catch(() => {});
  osc.start();
  osc.stop(ctx.currentTime + 1);
  setTimeout(() => { audio.srcObject = null; }, 1200);
}

/**
 * Reachability (three timed `/healthz` requests) and a WebRTC check (does
 * this browser gather ICE candidates at all). The signaling socket is not
 * opened: a join is a real attempt.
 */
export async function connectionTest() {
  const times = [];
  for (let i = 0; i < 3; i += 1) {
    const started = performance.now();
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 5000);
      const response = await fetch('/healthz', { cache: 'no-store', signal: controller.signal });
      clearTimeout(timer);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await response.text();
      times.push(performance.now() - started);
    } catch {
      // counted as a miss
    }
  }
  if (!times.length) {
    return { verdict: 'bad', ...CONNECTION.unreachable };
  }
  times.sort((a, b) => a - b);
  const rtt = times[Math.floor(times.length / 2)];
  const candidates = await gatherCandidates(3000);
  const slow = rtt > 400 || times.length < 3;
  if (candidates === 0) {
    return { verdict: 'slow', ...CONNECTION.noVideo, rtt };
  }
  if (slow) {
    return { verdict: 'slow', ...CONNECTION.slow(Math.round(rtt)), rtt };
  }
  return { verdict: 'good', ...CONNECTION.good(Math.round(rtt)), rtt };
}

async function gatherCandidates(ms) {
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.createDataChannel('check');
    let count = 0;
    const done = new Promise((resolve) => {
      pc.onicecandidate = (e) => {
        if (e.candidate) count += 1;
        else resolve();
      };
      setTimeout(resolve, ms);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await done;
    return count;
  } catch {
    return 0;
  } finally {
    if (pc) pc.close();
  }
}
