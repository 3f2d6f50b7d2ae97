// End-to-end encryption's keys (issue 19): what the server relays but can
// never read. The frames themselves are encrypted in e2ee-worker.js.
//
// Per connection, an ephemeral ECDH P-256 key pair; its public key goes to
// the room (`e2ee_public_key`). With each other participant we share a
// wrapping key: HKDF-SHA-256 over the ECDH secret. Our media key (16
// random bytes, the SFrame base key) goes to each of them sealed with
// AES-GCM under that wrapping key (`e2ee_media_key`, relayed to that one
// person). A new media key is made whenever the room's membership or a
// public key changes (someone enters, leaves, is removed or replaced) and
// every few minutes, so that someone who left cannot read what follows
// and someone new cannot read what came before. The safety code is a hash
// of every current public key in the room: when it is the same on every
// screen, the server did not put a key of its own in between.

const ECDH = { name: 'ECDH', namedCurve: 'P-256' };
const WRAP_INFO = new TextEncoder().encode('Tandem E2EE v1 key wrap');
// RFC 9605 §4.4.2 with AES_128_GCM_SHA256_128 (cipher suite 0x0004).
const SUITE = 0x0004;
const ROTATE_EVERY_MS = 5 * 60 * 1000;
// A new key is used this long after it was sent, so that everyone has it
// (except when someone left: then at once).
const SWITCH_DELAY_MS = 300;
// Changes within this long make one rotation.
const ROTATE_BATCH_MS = 100;

export function e2eeSupported() {
  return typeof window.RTCRtpScriptTransform === 'function';
}

const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/** 12 digits in groups of four, from the room's public keys. */
export async function safetyCode(entries) {
  const text = [...entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([id, key]) => `${id}:${key}\n`).join('');
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  let n = 0n;
  for (const byte of digest.subarray(0, 8)) n = n * 256n + BigInt(byte);
  const digits = (n % 10n ** 12n).toString().padStart(12, '0');
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8)}`;
}

/** SFrame's key and salt for base key `raw` and KID `kid` (RFC 9605 §4.4.2). */
async function sframeKeys(raw, kid) {
  const base = await crypto.subtle.importKey('raw', raw, 'HKDF', false, ['deriveBits', 'deriveKey']);
  const label = (what) => {
    const prefix = new TextEncoder().encode(`SFrame 1.0 Secret ${what} `);
    const out = new Uint8Array(prefix.length + 10);
    out.set(prefix);
    const view = new DataView(out.buffer);
    view.setUint32(prefix.length, Math.floor(kid / 2 ** 32));
    view.setUint32(prefix.length + 4, kid >>> 0);
    view.setUint16(prefix.length + 8, SUITE);
    return out;
  };
  const hkdf = (what) => ({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: label(what) });
  const key = await crypto.subtle.deriveKey(hkdf('key'), base, { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt']);
  const salt = new Uint8Array(await crypto.subtle.deriveBits(hkdf('salt'), base, 96));
  return { key, salt };
}

export class E2ee {
  /**
   * @param {object} o
   * @param {(message: object) => void} o.send signaling
   * @param {(state: object) => void} o.changed the mode, whether it is on, the safety code
   */
  constructor({ send, changed }) {
    this.send = send;
    this.changed = changed;
    this.worker = new Worker('/client/e2ee-worker.js', { type: 'module', name: 'e2ee' });
    this.mode = 'off';
    this.active = false;
    this.me = null;
    this.pair = null;
    this.publicKey = null;
    this.peers = new Map(); // id → { publicKey, wrap, kids: [] }
    this.kid = 0;
    this.code = '';
    this.rotateTimer = null;
    this.rotateSoon = null;
    this.rotateNow = false;
    this.chain = Promise.resolve();
  }

  /** Work on the keys one step at a time, in the order things happened. */
  queue(step) {
    this.chain = this.chain.then(step).catch((err) => console.warn('e2ee:', err));
    return this.chain;
  }

  /** `joined`: a new connection, so a new key pair; the room's mode. */
  joined(me, state) {
    return this.queue(async () => {
      this.me = me.id;
      this.mode = state?.mode || 'off';
      this.peers = new Map();
      this.worker.postMessage({ type: 'reset' });
      this.setActive(!!state?.active);
      this.pair = await crypto.subtle.generateKey(ECDH, false, ['deriveBits']);
      this.publicKey = b64(await crypto.subtle.exportKey('raw', this.pair.publicKey));
      // A random first KID: KIDs of different senders do not collide.
      this.kid = crypto.getRandomValues(new Uint32Array(1))[0] & 0x3fffffff;
      this.send({ type: 'e2ee_public_key', public_key: this.publicKey });
      await this.rotate(true);
      await this.report();
      clearInterval(this.rotateTimer);
      this.rotateTimer = setInterval(() => this.queue(() => this.rotate(false)), ROTATE_EVERY_MS);
    });
  }

  setActive(active) {
    this.active = active;
    this.worker.postMessage({ type: 'active', active });
  }

  /** `e2ee`: the room's mode changed (someone who cannot encrypt came or went). */
  modeChanged(m) {
    return this.queue(async () => {
      this.mode = m.mode;
      this.setActive(m.active);
      await this.report();
    });
  }

  /** `e2ee_public_key`: someone's key for their current connection. */
  publicKeyOf(id, publicKey) {
    return this.queue(async () => {
      if (!this.pair || id === this.me) return;
      const theirs = await crypto.subtle.importKey('raw', unb64(publicKey), ECDH, false, []);
      const secret = await crypto.subtle.deriveBits({ name: 'ECDH', public: theirs }, this.pair.privateKey, 256);
      const ikm = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveKey']);
      const wrap = await crypto.subtle.deriveKey(
        { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: WRAP_INFO },
        ikm, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt'],
      );
      const before = this.peers.get(id);
      this.peers.set(id, { publicKey, wrap, kids: before?.kids || [] });
      // A new person or a new device: a new media key for everyone.
      this.soon(false);
      await this.report();
    });
  }

  /** `participant_left`: their keys are forgotten and ours changes at once. */
  left(id) {
    return this.queue(async () => {
      const peer = this.peers.get(id);
      if (!peer) return;
      this.peers.delete(id);
      this.worker.postMessage({ type: 'forget', kids: peer.kids });
      this.soon(true);
      await this.report();
    });
  }

  /** `e2ee_media_key`: someone's media key, sealed for us. */
  mediaKey(m) {
    return this.queue(async () => {
      const peer = this.peers.get(m.from);
      if (!peer) return;
      const sealed = unb64(m.wrapped);
      let raw;
      try {
        raw = await crypto.subtle.decrypt(
          { name: 'AES-GCM', iv: sealed.subarray(0, 12), additionalData: this.aad(m.from, this.me, m.key_id) },
          peer.wrap, sealed.subarray(12),
        );
      } catch {
        console.warn(`e2ee: a media key from ${m.from} does not open`);
        return;
      }
      const { key, salt } = await sframeKeys(new Uint8Array(raw), m.key_id);
      peer.kids.push(m.key_id);
      // The current key and the one before it (frames in flight).
      const old = peer.kids.splice(0, Math.max(0, peer.kids.length - 2));
      if (old.length) this.worker.postMessage({ type: 'forget', kids: old });
      this.worker.postMessage({ type: 'key', kid: m.key_id, key, salt });
    });
  }

  aad(from, to, kid) {
    return new TextEncoder().encode(`${from}\n${to}\n${kid}`);
  }

  /**
   * A rotation shortly: changes that come together (several people
   * admitted at once) make one new key, not one each, which keeps the
   * messages we send far below the server's limit.
   */
  soon(now) {
    this.rotateNow = this.rotateNow || now;
    if (this.rotateSoon) return;
    this.rotateSoon = setTimeout(() => this.queue(async () => {
      const at = this.rotateNow;
      this.rotateSoon = null;
      this.rotateNow = false;
      await this.rotate(at);
      await this.report();
    }), ROTATE_BATCH_MS);
  }

  /** A new media key: sealed for everyone in the room, then ours. */
  async rotate(now) {
    if (!this.pair) return;
    this.kid = (this.kid + 1) % 2 ** 32;
    const kid = this.kid;
    const raw = crypto.getRandomValues(new Uint8Array(16));
    for (const [id, peer] of this.peers) {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: this.aad(this.me, id, kid) }, peer.wrap, raw);
      this.send({ type: 'e2ee_media_key', to: id, key_id: kid, wrapped: b64([...iv, ...new Uint8Array(sealed)]) });
    }
    const { key, salt } = await sframeKeys(raw, kid);
    const use = () => {
      if (this.kid === kid) this.worker.postMessage({ type: 'own', kid, key, salt });
    };
    if (now || this.peers.size === 0) use();
    else setTimeout(use, SWITCH_DELAY_MS);
  }

  async report() {
    const entries = [[this.me, this.publicKey], ...[...this.peers].map(([id, p]) => [id, p.publicKey])];
    this.code = this.publicKey ? await safetyCode(entries) : '';
    this.changed({ mode: this.mode, active: this.active, code: this.code, keyId: this.kid });
  }

  /** Encrypts what `sender` sends (audio or video). */
  protectSender(sender, kind) {
    if (sender && !sender.transform) sender.transform = new RTCRtpScriptTransform(this.worker, { role: 'send', kind });
  }

  /** Decrypts what `receiver` receives. */
  protectReceiver(receiver) {
    if (receiver && !receiver.transform) {
      receiver.transform = new RTCRtpScriptTransform(this.worker, { role: 'receive', kind: receiver.track.kind });
    }
  }

  close() {
    clearInterval(this.rotateTimer);
    clearTimeout(this.rotateSoon);
    this.worker.terminate();
  }
}
