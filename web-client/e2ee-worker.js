// End-to-end encryption of media frames (issue 19): SFrame (RFC 9605)
// with cipher suite AES_128_GCM_SHA256_128, applied to every encoded frame
// through RTCRtpScriptTransform. It runs in a worker because the transform
// API hands frames to a worker; the keys it uses arrive from e2ee.js as
// non-extractable CryptoKeys, already derived (RFC 9605 §4.4.2).
//
// Layout of a protected frame: the first bytes of the codec payload stay
// in the clear (VP8: 10 of a keyframe, 3 of a delta frame; Opus: 1), so
// that the server's keyframe detection (the VP8 payload header's P bit)
// and the receiving browser's depacketizer keep working; then the SFrame
// header (KID, CTR); then the AES-GCM ciphertext with its 16-byte tag. The
// AAD is the SFrame header followed by the clear bytes, so none of them can
// be changed unnoticed. The nonce is the key's salt XOR the counter.
//
// A frame is never sent in the clear while encryption is on: without a key
// it is dropped. A received frame that does not decrypt is dropped too.

const CLEAR = { key: 10, delta: 3, audio: 1 };

// Our own key: { kid, key, salt }, and the next counter (one per key).
let own = null;
let counter = 0;
// Everyone else's keys by KID (KIDs are random per connection, so they do
// not collide between senders): { key, salt }.
const keys = new Map();
// Fail closed: until e2ee.js says the room is not end-to-end encrypted,
// nothing leaves in the clear.
let active = true;
const senders = new Set();
const receivers = new Set();
// Receivers that dropped frames for lack of a key ask for a keyframe once
// that key arrives.
const starving = new Set();

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'active') active = m.active;
  else if (m.type === 'reset') {
    // A new connection: nothing of the last one's keys is kept.
    own = null;
    keys.clear();
  }
  else if (m.type === 'own') {
    own = { kid: m.kid, key: m.key, salt: m.salt };
    counter = 0;
    // A keyframe under the new key lets receivers decode at once.
    for (const t of senders) {
      if (t.kind === 'video' && typeof t.transformer.generateKeyFrame === 'function') {
        t.transformer.generateKeyFrame().catch(() => {});
      }
    }
  } else if (m.type === 'key') {
    keys.set(m.kid, { key: m.key, salt: m.salt });
    for (const t of starving) {
      if (typeof t.transformer.sendKeyFrameRequest === 'function') t.transformer.sendKeyFrameRequest().catch(() => {});
    }
    starving.clear();
  } else if (m.type === 'forget') {
    for (const kid of m.kids) keys.delete(kid);
  }
};

self.onrtctransform = (event) => {
  const transformer = event.transformer;
  const { role, kind } = transformer.options;
  const entry = { transformer, kind };
  (role === 'send' ? senders : receivers).add(entry);
  const transform = new TransformStream({
    transform: role === 'send'
      ? (frame, controller) => encrypt(frame, kind, controller)
      : (frame, controller) => decrypt(frame, kind, controller, entry),
  });
  transformer.readable.pipeThrough(transform).pipeTo(transformer.writable).catch(() => {
    senders.delete(entry);
    receivers.delete(entry);
    starving.delete(entry);
  });
};

function clearLength(frame, kind) {
  if (kind === 'audio') return CLEAR.audio;
  return frame.type === 'key' ? CLEAR.key : CLEAR.delta;
}

/** The SFrame header (RFC 9605 §4.3) for `kid` and `ctr`. */
export function header(kid, ctr) {
  const kidBytes = minimal(kid);
  const ctrBytes = minimal(ctr);
  const out = [];
  let config = 0;
  if (kid < 8) config |= kid << 4;
  else config |= 0x80 | ((kidBytes.length - 1) << 4);
  if (ctr < 8) config |= ctr;
  else config |= 0x08 | (ctrBytes.length - 1);
  out.push(config);
  if (kid >= 8) out.push(...kidBytes);
  if (ctr >= 8) out.push(...ctrBytes);
  return Uint8Array.from(out);
}

/** A non-negative integer (< 2^53) as big-endian bytes, no leading zeros. */
function minimal(n) {
  const bytes = [];
  let v = n;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  return bytes;
}

/** Reads a header at `at`: { kid, ctr, length } or null. */
function parseHeader(data, at) {
  if (at >= data.length) return null;
  const config = data[at];
  let i = at + 1;
  const field = (extended, value) => {
    if (!extended) return value;
    const n = value + 1;
    if (i + n > data.length) return null;
    let v = 0;
    for (let j = 0; j < n; j += 1) v = v * 256 + data[i + j];
    i += n;
    return v;
  };
  const kid = field(config & 0x80, (config >> 4) & 0x07);
  if (kid === null) return null;
  const ctr = field(config & 0x08, config & 0x07);
  if (ctr === null) return null;
  return { kid, ctr, length: i - at };
}

/** The nonce: the salt XOR the counter, big-endian in its last bytes. */
function nonce(salt, ctr) {
  const iv = new Uint8Array(salt);
  let v = ctr;
  for (let i = iv.length - 1; i >= 0 && v > 0; i -= 1) {
    iv[i] ^= v % 256;
    v = Math.floor(v / 256);
  }
  return iv;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function encrypt(frame, kind, controller) {
  if (!active) {
    controller.enqueue(frame);
    return;
  }
  if (!own) return; // never in the clear
  const data = new Uint8Array(frame.data);
  const clear = data.subarray(0, Math.min(clearLength(frame, kind), data.length));
  const ctr = counter;
  counter += 1;
  const { kid, key, salt } = own;
  const head = header(kid, ctr);
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce(salt, ctr), additionalData: concat(head, clear), tagLength: 128 },
    key,
    data.subarray(clear.length),
  );
  frame.data = concat(clear, head, new Uint8Array(sealed)).buffer;
  controller.enqueue(frame);
}

async function decrypt(frame, kind, controller, entry) {
  if (!active) {
    controller.enqueue(frame);
    return;
  }
  const data = new Uint8Array(frame.data);
  const clearLen = Math.min(clearLength(frame, kind), data.length);
  const head = parseHeader(data, clearLen);
  if (!head) return;
  const k = keys.get(head.kid);
  if (!k) {
    starving.add(entry);
    return;
  }
  const clear = data.subarray(0, clearLen);
  const at = clearLen + head.length;
  try {
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce(k.salt, head.ctr), additionalData: concat(data.subarray(clearLen, at), clear), tagLength: 128 },
      k.key,
      data.subarray(at),
    );
    frame.data = concat(clear, new Uint8Array(plain)).buffer;
    controller.enqueue(frame);
  } catch {
    // Not for a key we hold, or altered: dropped, never shown.
  }
}
