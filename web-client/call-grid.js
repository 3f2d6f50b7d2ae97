// The call screen's video grid: one tile per person (name, role, who is
// speaking, microphone and camera off, a raised hand), shared screens shown
// large, our own picture in a corner once someone else is here, and their
// voices. In a group room (issue 21): partners sit side by side with their
// couple marked, the pinned (for us) or spotlighted (for everyone) person is
// shown large, the active speaker is highlighted (from the audio levels of
// our own getStats, not the server's), a narrow screen pages through the
// tiles four at a time instead of shrinking them, and each tile's size
// reaches the server as a layer preference (small tile: low simulcast
// layer; large tile or the active speaker: high).

import { CALL, roleName } from './messages.js';
import { app } from './state.js';
import { $, el, announce, initials } from './ui.js';

function makeTile(key, { name, role, self = false, screen = false }) {
  const video = el('video', { autoplay: true, playsInline: true, muted: true });
  if (self) video.classList.add('mirror');
  const nameEl = el('span', { class: 'tile-name', text: self ? CALL.youNamed(name) : (screen ? CALL.screenOf(name) : name) });
  const roleEl = el('span', { class: 'tile-role', text: screen ? CALL.screen : roleName(role) });
  const household = el('span', { class: 'tile-household', hidden: true });
  const badges = el('span', { class: 'tile-badges' });
  const caption = el('figcaption', {}, nameEl, roleEl, household, badges);
  const avatar = el('div', { class: 'avatar', 'aria-hidden': 'true', text: initials(name) });
  const root = el('figure', { class: `tile${screen ? ' screen-tile' : ''}${self ? ' self' : ''}`, 'data-key': key }, video, avatar, caption);
  return { root, video, badges, household, avatar, trackId: null, audio: null, audioIds: '' };
}

function setVideo(tile, track) {
  const id = track ? track.id : null;
  if (tile.trackId !== id) {
    tile.trackId = id;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
  }
  tile.root.classList.toggle('no-video', !track);
}

export function setBadges(tile, { audio, video, speaking, hand = false }) {
  const items = [];
  if (hand) items.push(['hand', CALL.badges.hand]);
  if (speaking) items.push(['speaking', CALL.badges.speaking]);
  if (!audio) items.push(['off', CALL.badges.micOff]);
  if (!video) items.push(['off', CALL.badges.cameraOff]);
  const text = items.map((i) => i[1]).join(', ');
  if (tile.badges.dataset.text === text) return;
  tile.badges.dataset.text = text;
  tile.badges.replaceChildren(...items.map(([kind, label]) => el('span', { class: `badge ${kind}`, text: label })));
  tile.root.classList.toggle('speaking', !!speaking);
}

export function renderTiles() {
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
  const featured = featuredId(call);
  const households = [];
  for (const p of byHousehold(call)) {
    let tile = app.tiles.get(p.id);
    if (!tile) {
      tile = makeTile(p.id, { name: p.name, role: p.role });
      app.tiles.set(p.id, tile);
    }
    markHousehold(tile, p, call, households);
    tile.root.classList.toggle('featured', p.id === featured);
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
  // a corner once someone else is here. The featured person comes first.
  const people = want.slice(1);
  people.sort((a, b) => b.root.classList.contains('featured') - a.root.classList.contains('featured'));
  const others = [...screens, ...people];
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
  const shown = paginate(inGrid);
  grid.dataset.count = String(Math.min(shown.length, 20));
  grid.classList.toggle('has-screen', screens.length > 0);
  grid.classList.toggle('has-featured', !screens.length && !!featured && shown.some((t) => t.root.classList.contains('featured')));
  grid.style.setProperty('--n', String(Math.max(1, shown.length - 1)));
  preferLayers(call, shown, featured);
  const alone = call.participants.size === 0;
  $('alone-note').hidden = !alone;
  $('alone-note').textContent = call.me.role === 'clinician' ? CALL.alone.clinician : CALL.alone.other;
  refreshParticipantBadges();
}

/** The level (getStats `audioLevel`, 0..1) above which someone is speaking. */
const SPEAKING_LEVEL = 0.02;
/** How long the active speaker stays highlighted after they stop. */
const SPEAKER_HOLD_MS = 2000;

export function refreshParticipantBadges(levels = null) {
  const call = app.call;
  const raised = new Set(call.hands.map((h) => h.id));
  let loudest = null;
  for (const p of call.participants.values()) {
    const tile = app.tiles.get(p.id);
    if (!tile) continue;
    const level = levels?.get(p.id)?.level || 0;
    const speaking = p.audio && level > SPEAKING_LEVEL;
    if (speaking && (!loudest || level > loudest.level)) loudest = { id: p.id, level };
    setBadges(tile, { audio: p.audio, video: p.video, speaking: levels ? speaking : tile.root.classList.contains('speaking'), hand: raised.has(p.id) });
  }
  if (!levels) return;
  const now = Date.now();
  const before = app.activeSpeaker?.id || null;
  if (loudest) app.activeSpeaker = { id: loudest.id, at: now };
  else if (app.activeSpeaker && now - app.activeSpeaker.at > SPEAKER_HOLD_MS) app.activeSpeaker = null;
  const after = app.activeSpeaker?.id || null;
  for (const [key, tile] of app.tiles) tile.root.classList.toggle('active-speaker', key === after && call.participants.size > 1);
  if (before !== after) renderTiles();
}

// ---------------------------------------------------------------- group rooms

/** Pinned (for us) wins over spotlighted (for everyone); only someone in the room. */
function featuredId(call) {
  if (app.pinned && call.participants.has(app.pinned)) return app.pinned;
  if (call.spotlight && call.participants.has(call.spotlight)) return call.spotlight;
  return null;
}

/** The people in the room with partners next to each other; our own household first. */
function byHousehold(call) {
  const groups = new Map();
  for (const p of call.participants.values()) {
    const key = p.household ? `h:${p.household}` : `p:${p.id}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const mine = call.me.household ? `h:${call.me.household}` : null;
  const entries = [...groups.entries()];
  entries.sort(([a], [b]) => (b === mine) - (a === mine));
  return entries.flatMap(([, people]) => people);
}

/** A couple's tiles carry its mark (the clinician sees every couple; others their own). */
function markHousehold(tile, p, call, households) {
  const h = p.household || null;
  if (h && !households.includes(h)) households.push(h);
  const text = !h ? '' : (call.me.role === 'clinician' ? CALL.coupleMark(h) : CALL.yourHousehold);
  tile.household.hidden = !h;
  if (tile.household.textContent !== text) tile.household.textContent = text;
  if (h) tile.root.dataset.household = String(households.indexOf(h) % 6);
  else delete tile.root.dataset.household;
}

/** Tiles per page: at 360 px four (2 x 2) rather than twenty too small to see. */
const NARROW = '(max-width: 560px)';
const PAGE_NARROW = 4;
const PAGE_WIDE = 20;
let pagerWired = false;

function paginate(tiles) {
  if (!pagerWired) {
    pagerWired = true;
    $('page-prev').addEventListener('click', () => { app.page -= 1; renderTiles(); });
    $('page-next').addEventListener('click', () => { app.page += 1; renderTiles(); });
    window.matchMedia(NARROW).addEventListener('change', () => renderTiles());
  }
  const size = window.matchMedia(NARROW).matches ? PAGE_NARROW : PAGE_WIDE;
  const pages = Math.max(1, Math.ceil(tiles.length / size));
  app.page = Math.min(Math.max(0, app.page), pages - 1);
  const shown = tiles.slice(app.page * size, (app.page + 1) * size);
  const visible = new Set(shown);
  for (const t of tiles) t.root.hidden = !visible.has(t);
  $('pager').hidden = pages < 2;
  $('page-label').textContent = CALL.page(app.page + 1, pages);
  $('page-prev').disabled = app.page === 0;
  $('page-next').disabled = app.page >= pages - 1;
  return shown;
}

/** From this many people in the room on, small tiles ask for the low layer. */
const GROUP_LAYOUT = 5;

/** Tells the server which layer each video needs, from the tiles' sizes (only changes are sent). */
function preferLayers(call, shown, featured) {
  if (call.participants.size + 1 < GROUP_LAYOUT) {
    call.preferLayers({});
    return;
  }
  const visible = new Set(shown.map((t) => t.root.dataset.key));
  const speaker = app.activeSpeaker?.id;
  const layers = {};
  for (const p of call.participants.values()) {
    const large = p.id === featured || p.id === speaker;
    layers[p.id] = large && visible.has(p.id) ? 'high' : 'low';
  }
  call.preferLayers(layers);
}
