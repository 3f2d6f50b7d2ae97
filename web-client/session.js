// The call engine: the signaling socket (docs/protocol.md), reconnection,
// and the two peer connections (`pub` for our media, `sub` for everyone
// else's). It knows nothing about the page; it reports through `emit`.
// End-to-end encryption's keys are e2ee.js's; this file attaches its
// transforms to our senders and receivers and hands it the key messages.

import { E2ee, e2eeSupported } from './e2ee.js';

const TERMINAL = new Set(['denied', 'removed', 'ended', 'replaced']);
const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];
const PING_EVERY_MS = 5000;
const SILENCE_LIMIT_MS = 12000;
// `redirect`s followed in a row (without `waiting` or `joined` between
// them) before the connection counts as lost (docs/protocol.md).
const REDIRECT_LIMIT = 3;
// A media connection that fails without ever having connected, this many
// times in a row after admission, can never work here (a network that
// blocks WebRTC): the call stops and says so, instead of a reconnect that
// sends the person back to the waiting room every few seconds.
const MEDIA_FAILURE_LIMIT = 2;
// Once media has worked in this call, failures are a network that changed
// (Wi-Fi to cellular, a dock, a VPN): a connection made in the moment the
// old address went away fails at once, and the next one works. Only this
// many in a row, each after a longer pause, mean the new network blocks
// the call.
const MEDIA_FAILURE_LIMIT_AFTER_WORKING = 6;
// A media connection not connected this long after it was made counts as
// failed (some networks drop the checks silently, and ICE waits long).
const CONNECT_LIMIT_MS = 15000;

/** The sections of an SDP, one per m-line, with what the client needs. */
export function parseSdp(sdp) {
  const sections = sdp.split(/\r?\n(?=m=)/).slice(1);
  return sections.map((text) => {
    const lines = text.split(/\r?\n/);
    const [kind, port] = lines[0].slice(2).split(' ');
    const out = { kind, port: Number(port), mid: null, direction: 'sendrecv', stream: null, track: null };
    for (const line of lines) {
      if (line.startsWith('a=mid:')) out.mid = line.slice(6).trim();
      else if (/^a=(sendonly|recvonly|sendrecv|inactive)$/.test(line.trim())) out.direction = line.trim().slice(2);
      else if (line.startsWith('a=msid:')) {
        const [stream, track] = line.slice(7).trim().split(' ');
        out.stream = stream;
        out.track = track || null;
      }
    }
    return out;
  });
}

export class Call {
  /**
   * @param {object} o
   * @param {string} o.token the invite token (sent only in `join`)
   * @param {object|null} o.attestation
   * @param {(type: string, data?: any) => void} o.emit
   */
  constructor({ token, attestation, emit }) {
    this.token = token;
    this.attestation = attestation;
    this.emit = emit;
    this.ws = null;
    this.terminal = false;
    this.attempt = 0;
    this.reconnecting = false;
    this.everIn = false;
    this.me = null;
    this.session = null;
    this.participants = new Map();
    this.hands = []; // raised hands, oldest first: [{id, since}]
    this.spotlight = null; // the participant everyone sees large
    this.sentLayers = '[]';
    this.pcs = { pub: null, sub: null };
    this.remoteSet = { pub: false, sub: false };
    this.buffered = { pub: [], sub: [] };
    this.pubBusy = false;
    this.pubAgain = false;
    this.iceServers = [];
    this.audioTrack = null;
    this.videoTrack = null;
    this.screenTrack = null;
    this.stream = new MediaStream();
    this.audioOn = true;
    this.videoOn = true;
    this.locked = { audio: false, video: false };
    this.remote = new Map();
    this.prevStats = new Map();
    this.chain = Promise.resolve();
    this.lastHeard = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    // In a cluster, the node that holds the room (a `redirect`'s url); null:
    // this page's own address (the load balancer).
    this.signalUrl = null;
    this.redirects = 0;
    this.mediaFailures = 0; // in a row, of connections that never connected
    this.mediaWorked = false; // a media connection connected in this call
    this.e2ee = null; // end-to-end encryption, in rooms that have it
    this.onOffline = () => this.lost('offline');
    this.onOnline = () => {
      if (this.reconnecting && !this.terminal) {
        clearTimeout(this.retryTimer);
        this.connect();
      }
    };
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
  }

  /** Our own media: tracks may be null (no device, or camera off). */
  setLocal({ audio, video }) {
    this.audioTrack = audio || null;
    this.videoTrack = video || null;
    this.audioOn = !!audio && audio.enabled;
    this.videoOn = !!video;
  }

  connect() {
    if (this.terminal) return;
    clearTimeout(this.retryTimer);
    const url = this.signalUrl || `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/signal`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      const join = { type: 'join', token: this.token };
      if (this.attestation) join.attestation = this.attestation;
      if (e2eeSupported()) join.e2ee = true;
      this.send(join);
      this.startPing();
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(e.data);
      } catch {
        return;
      }
      this.chain = this.chain
        .then(() => this.handle(message))
        .catch((err) => {
          console.warn(`handling ${message.type}:`, err);
          // A closed connection is a restart on its way, not a failure.
          if (!this.terminal && err?.message !== 'connection closed') this.emit('trouble', { type: message.type });
        });
    };
    ws.onclose = () => {
      // After the messages already received: a terminal one (ended,
      // removed…) arrives just before the close and must win.
      this.chain = this.chain.then(() => {
        if (ws === this.ws) this.lost('closed');
      });
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) return this.lost('silent');
      this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  /** The socket is gone without a terminal message: reconnect. */
  lost(why) {
    if (this.terminal || !this.ws) return;
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    try {
      ws.close();
    } catch {
      // already closed
    }
    this.closePcs();
    // Back through our own address: if the room's node died, another one
    // holds the room now, and our address sends us there.
    this.signalUrl = null;
    this.redirects = 0;
    this.reconnecting = true;
    this.emit('reconnecting', { why, attempt: this.attempt });
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    // Offline: wait for the `online` event, but try now and then anyway.
    this.retryTimer = setTimeout(() => this.connect(), navigator.onLine ? delay : Math.max(delay, 4000));
  }

  /** The room is on another node of the cluster: join there at once. */
  redirected(url) {
    let target;
    try {
      target = new URL(url);
    } catch {
      target = null;
    }
    if (!target || target.protocol !== 'wss:' || this.redirects >= REDIRECT_LIMIT) {
      this.lost('redirect');
      return;
    }
    this.redirects += 1;
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    try {
      ws?.close();
    } catch {
      // already closed
    }
    if (this.everIn && !this.reconnecting) {
      // A room handed over while we were in it: like a reconnect.
      this.closePcs();
      this.reconnecting = true;
      this.emit('reconnecting', { why: 'moved', attempt: 0 });
    }
    this.signalUrl = target.href;
    this.connect();
  }

  /** A full restart of the connection (media failed beyond repair). */
  restart() {
    if (!this.terminal && this.ws) this.lost('media');
  }

  leave() {
    this.send({ type: 'leave' });
    this.finish();
  }

  finish() {
    this.terminal = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close();
      } catch {
        // gone
      }
    }
    this.closePcs();
    if (this.e2ee) this.e2ee.close();
    this.e2ee = null;
  }

  wasReconnecting() {
    if (!this.reconnecting) return false;
    this.reconnecting = false;
    this.attempt = 0;
    return true;
  }

  async handle(m) {
    if (TERMINAL.has(m.type)) {
      this.finish();
      this.emit(m.type, m);
      return;
    }
    switch (m.type) {
      case 'redirect':
        return this.redirected(m.url);
      case 'waiting': {
        this.redirects = 0;
        const back = this.wasReconnecting();
        this.closePcs();
        this.emit('waiting', { reason: m.reason, reconnected: back });
        return;
      }
      case 'joined':
        return this.onJoined(m);
      case 'lobby':
        return this.emit('lobby', m.waiting || []);
      case 'participant_joined':
        this.participants.set(m.participant.id, { ...m.participant });
        return this.emit('participants', { joined: m.participant });
      case 'participant_left':
        this.participants.delete(m.participant.id);
        if (this.e2ee) this.e2ee.left(m.participant.id);
        return this.emit('participants', { left: m.participant });
      case 'media': {
        const p = this.participants.get(m.participant);
        if (p) {
          p.audio = m.audio;
          p.video = m.video;
        }
        return this.emit('participants', { media: m.participant });
      }
      case 'muted':
        this.locked[m.kind] = m.allow_unmute === false;
        if (m.kind === 'audio') {
          this.audioOn = false;
          if (this.audioTrack) this.audioTrack.enabled = false;
        } else {
          await this.setCamera(null);
        }
        return this.emit('muted', m);
      case 'unmute_allowed':
        this.locked[m.kind] = false;
        return this.emit('unmute_allowed', m);
      case 'breakout':
        return this.emit('breakout', m);
      case 'breakout_ending':
      case 'breakout_message':
      case 'speaking':
        return this.emit(m.type, m);
      case 'hands':
        this.hands = m.raised || [];
        return this.emit('hands', this.hands);
      case 'spotlight':
        this.spotlight = m.participant || null;
        return this.emit('spotlight', this.spotlight);
      case 'session_ending':
        return this.emit('session_ending', m);
      case 'e2ee':
        if (this.e2ee) this.e2ee.modeChanged(m);
        else this.emit('e2ee', { mode: m.mode, active: false, code: '' });
        return undefined;
      case 'e2ee_public_key':
        if (this.e2ee) this.e2ee.publicKeyOf(m.participant, m.public_key);
        return undefined;
      case 'e2ee_media_key':
        if (this.e2ee) this.e2ee.mediaKey(m);
        return undefined;
      case 'offer':
        return this.onOffer(m);
      case 'answer':
        return this.onAnswer(m);
      case 'candidate':
        return this.addCandidate(m.pc, m.candidate);
      case 'error':
        console.warn(`server: ${m.code}: ${m.message}`);
        return this.emit('server_error', m);
      default:
        return undefined;
    }
  }

  async onJoined(m) {
    this.redirects = 0;
    const back = this.wasReconnecting();
    this.me = m.you;
    this.session = m.session;
    this.iceServers = m.ice_servers || [];
    this.participants = new Map(m.participants.map((p) => [p.id, { ...p }]));
    // Told again after `joined` when there are any.
    this.hands = [];
    this.spotlight = null;
    this.sentLayers = '[]';
    this.closePcs();
    // End-to-end encryption: a new key pair for this connection, before
    // any media is sent.
    const e2ee = m.e2ee || { mode: 'off', active: false };
    if (e2ee.mode !== 'off' && e2eeSupported()) {
      if (!this.e2ee) this.e2ee = new E2ee({ send: (x) => this.send(x), changed: (state) => this.emit('e2ee', state) });
      this.e2ee.joined(m.you, e2ee);
    } else {
      this.emit('e2ee', { mode: e2ee.mode, active: false, code: '' });
    }
    // The connection for our media before anything else: a browser that
    // cannot make one leaves at once and says so, never "joined".
    try {
      this.preparePub();
    } catch (err) {
      console.warn('cannot create the media connection:', err);
      this.stop('broken');
      return;
    }
    this.everIn = true;
    this.emit('joined', { reconnected: back });
    // Our state survives a reconnect; tell the room if it differs from the default.
    if (!this.audioOn || !this.videoOn) this.sendMedia();
    await this.negotiatePub();
  }

  /** Leaves the room for good and reports why (`blocked`, `broken`). */
  stop(why) {
    this.send({ type: 'leave' });
    this.finish();
    this.emit(why);
  }

  /** A media connection failed; restart, or stop when it can never work. */
  mediaFailed(pc) {
    if (!pc.everConnected) this.mediaFailures += 1;
    const limit = this.mediaWorked ? MEDIA_FAILURE_LIMIT_AFTER_WORKING : MEDIA_FAILURE_LIMIT;
    if (this.mediaFailures >= limit) this.stop('blocked');
    else this.restart();
  }

  sendMedia() {
    this.send({ type: 'media', audio: this.audioOn, video: this.videoOn });
  }

  makePc(name) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    // A closed connection never settles the operations in flight: every
    // await on it goes through guard(), which gives up when it closes.
    pc.closedSignal = new Promise((resolve) => { pc.markClosed = resolve; });
    this.pcs[name] = pc;
    this.remoteSet[name] = false;
    pc.onicecandidate = (e) => {
      if (this.pcs[name] !== pc) return;
      this.send({ type: 'candidate', pc: name, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    let failTimer = null;
    pc.everConnected = false;
    const connectTimer = setTimeout(() => {
      if (this.pcs[name] === pc && !pc.everConnected) this.mediaFailed(pc);
    }, CONNECT_LIMIT_MS);
    pc.onconnectionstatechange = () => {
      if (this.pcs[name] !== pc) return;
      clearTimeout(failTimer);
      if (pc.connectionState === 'connected') {
        pc.everConnected = true;
        this.mediaWorked = true;
        this.mediaFailures = 0;
        clearTimeout(connectTimer);
      }
      if (pc.connectionState === 'failed') this.mediaFailed(pc);
      else if (pc.connectionState === 'disconnected') failTimer = setTimeout(() => {
        if (this.pcs[name] === pc && pc.connectionState !== 'connected') this.mediaFailed(pc);
      }, 8000);
      this.emit('pc', { name, state: pc.connectionState });
    };
    return pc;
  }

  closePcs() {
    for (const name of ['pub', 'sub']) {
      const pc = this.pcs[name];
      this.pcs[name] = null;
      this.remoteSet[name] = false;
      this.buffered[name] = [];
      if (pc) {
        pc.markClosed();
        pc.close();
      }
    }
    this.pubBusy = false;
    this.pubAgain = false;
    this.screenSender = null;
    if (this.remote.size) {
      this.remote = new Map();
      this.emit('remote', this.remote);
    }
  }

  /** `promise`, or a rejection once `pc` is closed. */
  guard(pc, promise) {
    return Promise.race([promise, pc.closedSignal.then(() => { throw new Error('connection closed'); })]);
  }

  /** The `pub` connection with our tracks (throws where a browser cannot make one). */
  preparePub() {
    const pub = this.makePc('pub');
    this.stream = new MediaStream([this.audioTrack, this.videoTrack].filter(Boolean));
    this.audioSender = pub.addTransceiver(this.audioTrack || 'audio', { direction: 'sendonly', streams: [this.stream] }).sender;
    this.videoSender = pub.addTransceiver(this.videoTrack || 'video', { direction: 'sendonly', streams: [this.stream] }).sender;
    if (this.screenTrack) {
      this.screenSender = pub.addTransceiver(this.screenTrack, { direction: 'sendonly', streams: [this.stream] }).sender;
    }
    if (this.e2ee) {
      this.e2ee.protectSender(this.audioSender, 'audio');
      this.e2ee.protectSender(this.videoSender, 'video');
      this.e2ee.protectSender(this.screenSender, 'video');
    }
  }

  async negotiatePub() {
    const pub = this.pcs.pub;
    if (!pub) return;
    if (this.pubBusy) {
      this.pubAgain = true;
      return;
    }
    this.pubBusy = true;
    const offer = await this.guard(pub, pub.createOffer());
    await this.guard(pub, pub.setLocalDescription(offer));
    this.send({ type: 'offer', pc: 'pub', sdp: offer.sdp });
  }

  async onAnswer(m) {
    const pub = this.pcs.pub;
    if (m.pc !== 'pub' || !pub || pub.signalingState !== 'have-local-offer') return;
    await this.guard(pub, pub.setRemoteDescription({ type: 'answer', sdp: m.sdp }));
    await this.flush('pub');
    this.pubBusy = false;
    if (this.pubAgain) {
      this.pubAgain = false;
      await this.negotiatePub();
    }
  }

  async onOffer(m) {
    if (m.pc !== 'sub') return;
    let sub = this.pcs.sub;
    if (!sub) {
      sub = this.makePc('sub');
      sub.ontrack = (e) => {
        if (this.e2ee) this.e2ee.protectReceiver(e.receiver);
        this.syncRemote();
      };
    }
    await this.guard(sub, sub.setRemoteDescription({ type: 'offer', sdp: m.sdp }));
    await this.flush('sub');
    const answer = await this.guard(sub, sub.createAnswer());
    await this.guard(sub, sub.setLocalDescription(answer));
    this.send({ type: 'answer', pc: 'sub', sdp: answer.sdp });
    this.syncRemote();
  }

  async flush(name) {
    this.remoteSet[name] = true;
    for (const c of this.buffered[name].splice(0)) await this.addCandidate(name, c);
  }

  async addCandidate(name, candidate) {
    const pc = this.pcs[name];
    if (!pc || !this.remoteSet[name]) {
      this.buffered[name].push(candidate);
      return;
    }
    try {
      await this.guard(pc, pc.addIceCandidate(candidate ?? undefined));
    } catch {
      // An end-of-candidates marker in an unexpected state: harmless.
    }
  }

  /** Who sends what on `sub`, read from the msid of the current offer. */
  syncRemote() {
    const sub = this.pcs.sub;
    if (!sub || !sub.remoteDescription) return;
    const byMid = new Map(sub.getTransceivers().map((t) => [t.mid, t]));
    const remote = new Map();
    for (const s of parseSdp(sub.remoteDescription.sdp)) {
      if (!s.stream || s.port === 0) continue;
      if (s.direction !== 'sendonly' && s.direction !== 'sendrecv') continue;
      const t = byMid.get(s.mid);
      if (!t) continue;
      let entry = remote.get(s.stream);
      if (!entry) {
        entry = { audio: [], video: [] };
        remote.set(s.stream, entry);
      }
      entry[s.kind === 'audio' ? 'audio' : 'video'].push({ mid: s.mid, track: t.receiver.track });
    }
    this.remote = remote;
    this.emit('remote', remote);
  }

  // ---- our own media ----

  setMic(on) {
    if (on && this.locked.audio) return false;
    this.audioOn = on;
    if (this.audioTrack) this.audioTrack.enabled = on;
    this.sendMedia();
    return true;
  }

  /** Replaces the camera track (null: camera off) without renegotiating. */
  async setCamera(track) {
    if (this.videoTrack && this.videoTrack !== track) this.videoTrack.stop();
    this.videoTrack = track;
    this.videoOn = !!track;
    const pub = this.pcs.pub;
    if (this.videoSender && pub) await this.guard(pub, this.videoSender.replaceTrack(track)).catch(() => {});
  }

  /** Replaces the microphone track (another device) without renegotiating. */
  async setMicTrack(track) {
    if (this.audioTrack && this.audioTrack !== track) this.audioTrack.stop();
    this.audioTrack = track;
    if (track) track.enabled = this.audioOn;
    const pub = this.pcs.pub;
    if (this.audioSender && pub) await this.guard(pub, this.audioSender.replaceTrack(track));
  }

  async cameraChanged() {
    this.sendMedia();
  }

  async startScreen(track) {
    this.screenTrack = track;
    const pub = this.pcs.pub;
    if (!pub) return;
    this.screenSender = pub.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] }).sender;
    if (this.e2ee) this.e2ee.protectSender(this.screenSender, 'video');
    await this.negotiatePub();
  }

  async stopScreen() {
    const track = this.screenTrack;
    this.screenTrack = null;
    if (track) track.stop();
    const pub = this.pcs.pub;
    if (!pub || !this.screenSender) return;
    const t = pub.getTransceivers().find((x) => x.sender === this.screenSender);
    this.screenSender = null;
    if (t) {
      try {
        t.stop();
      } catch {
        pub.removeTrack(t.sender);
      }
    }
    await this.negotiatePub();
  }

  // ---- clinician controls ----
  admit(id) { this.send({ type: 'admit', participant: id }); }
  admitAll() { this.send({ type: 'admit_all' }); }
  deny(id) { this.send({ type: 'deny', participant: id }); }
  remove(id) { this.send({ type: 'remove', participant: id }); }
  mute(id, kind, allowUnmute) { this.send({ type: 'mute', participant: id, kind, allow_unmute: allowUnmute }); }
  allowUnmute(id, kind) { this.send({ type: 'allow_unmute', participant: id, kind }); }
  end() { this.send({ type: 'end' }); }
  breakout(household, withClinician, minutes) {
    const m = { type: 'breakout', household, with_clinician: withClinician };
    if (minutes) m.minutes = minutes;
    this.send(m);
  }
  endBreakout(household) { this.send({ type: 'end_breakout', household }); }
  endAllBreakouts() { this.send({ type: 'end_all_breakouts' }); }
  messageBreakouts(text) { this.send({ type: 'breakout_message', text }); }
  lowerHandOf(id) { this.send({ type: 'lower_hand', participant: id }); }
  setSpotlight(id) { this.send({ type: 'spotlight', participant: id }); }

  // ---- everyone ----
  raiseHand() { this.send({ type: 'raise_hand' }); }
  lowerHand() { this.send({ type: 'lower_hand' }); }
  get handRaised() { return !!this.me && this.hands.some((h) => h.id === this.me.id); }

  /**
   * Which layer we want of each person's video, from the size of their
   * tile (`{id: 'high'|'low'}`); sent only when it changes.
   */
  preferLayers(layers) {
    const text = JSON.stringify(Object.keys(layers).sort().map((k) => [k, layers[k]]));
    if (text === this.sentLayers) return;
    this.sentLayers = text;
    this.send({ type: 'layer_preference', layers });
  }

  /**
   * Per participant: audio level, and for their video the loss and bitrate
   * over the last interval (what we receive from them, through the server).
   */
  async stats() {
    const sub = this.pcs.sub;
    const out = new Map();
    if (!sub) return out;
    // By mid, or by track id where a browser's stats have no mid (older Safari).
    const midTo = new Map();
    const trackTo = new Map();
    for (const [pid, entry] of this.remote) {
      for (const a of entry.audio) {
        midTo.set(a.mid, { pid, kind: 'audio' });
        trackTo.set(a.track.id, { pid, kind: 'audio' });
      }
      entry.video.forEach((v, i) => {
        const who = { pid, kind: i === 0 ? 'video' : 'screen' };
        midTo.set(v.mid, who);
        trackTo.set(v.track.id, who);
      });
    }
    const report = await sub.getStats();
    const now = performance.now();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const who = (s.mid != null && midTo.get(s.mid)) || trackTo.get(s.trackIdentifier);
      if (!who) return;
      const o = out.get(who.pid) || { level: 0, lossPct: null, kbps: 0, receiving: false, measured: false };
      const prev = this.prevStats.get(s.id);
      const cur = { t: now, bytes: s.bytesReceived || 0, lost: s.packetsLost || 0, got: s.packetsReceived || 0 };
      this.prevStats.set(s.id, cur);
      if (who.kind === 'audio') {
        o.level = Math.max(o.level, s.audioLevel || 0);
      }
      if (prev && cur.t > prev.t) {
        const secs = (cur.t - prev.t) / 1000;
        o.kbps += Math.max(0, (cur.bytes - prev.bytes) * 8 / 1000 / secs);
        if (who.kind === 'video') {
          const lost = Math.max(0, cur.lost - prev.lost);
          const got = Math.max(0, cur.got - prev.got);
          o.lossPct = got + lost > 0 ? (100 * lost) / (got + lost) : o.lossPct;
          o.receiving = got > 0;
          o.measured = true;
        }
      }
      out.set(who.pid, o);
    });
    return out;
  }
}
