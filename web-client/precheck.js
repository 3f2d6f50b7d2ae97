// The pre-call check: camera and microphone (with pickers and a level
// meter), the speaker, and a short connection test. Nothing here talks to
// the signaling socket: a join is only sent when the person chooses to join.

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

export async function openCamera(cameraId) {
  const video = { ...(cameraId ? { deviceId: { exact: cameraId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } };
  const stream = await navigator.mediaDevices.getUserMedia({ video });
  return stream.getVideoTracks()[0];
}

export function explainMediaError(e) {
  if (!e) return '';
  switch (e.name) {
    case 'NotAllowedError':
      return 'Your browser is blocking the camera and microphone. Allow them for this site (the icon next to the address), then reload this page.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return "We couldn't find a camera or microphone. You can still join; check that one is plugged in.";
    case 'NotReadableError':
      return 'Another app may be using your camera or microphone. Close it, then reload this page.';
    default:
      return "We couldn't start your camera or microphone. You can still join.";
  }
}

export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: devices.filter((d) => d.kind === 'videoinput'),
    mics: devices.filter((d) => d.kind === 'audioinput'),
    speakers: devices.filter((d) => d.kind === 'audiooutput'),
  };
}

export function fillSelect(select, devices, fallback, current) {
  select.replaceChildren();
  devices.forEach((d, i) => {
    const option = document.createElement('option');
    option.value = d.deviceId;
    option.textContent = d.label || `${fallback} ${i + 1}`;
    if (d.deviceId === current) option.selected = true;
    select.append(option);
  });
  if (!devices.length) {
    const option = document.createElement('option');
    option.value = '';
    option.textContent = `No ${fallback.toLowerCase()} found`;
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
    return { verdict: 'bad', text: "We can't reach the server", detail: 'Check that you are online, then test again. If it keeps happening, call your clinic.' };
  }
  times.sort((a, b) => a - b);
  const rtt = times[Math.floor(times.length / 2)];
  const candidates = await gatherCandidates(3000);
  const slow = rtt > 400 || times.length < 3;
  if (candidates === 0) {
    return { verdict: 'slow', text: 'Your connection may not support video', detail: 'Your browser could not prepare a video connection. Try another network or browser if the call does not start.', rtt };
  }
  if (slow) {
    return { verdict: 'slow', text: 'Your connection may be slow', detail: `The server answered in ${Math.round(rtt)} ms. Video may be choppy; moving closer to your Wi-Fi can help.`, rtt };
  }
  return { verdict: 'good', text: 'Your connection looks good', detail: `The server answered in ${Math.round(rtt)} ms.`, rtt };
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
