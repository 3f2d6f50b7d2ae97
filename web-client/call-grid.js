// The call screen's video grid: one tile per person (name, role, who is
// speaking, microphone and camera off), shared screens shown large, our
// own picture in a corner once someone else is here, and their voices.

import { CALL, roleName } from './messages.js';
import { app } from './state.js';
import { $, el, announce, initials } from './ui.js';

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

export function setBadges(tile, { audio, video, speaking }) {
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

export function refreshParticipantBadges(levels = new Map()) {
  const call = app.call;
  for (const p of call.participants.values()) {
    const tile = app.tiles.get(p.id);
    if (!tile) continue;
    const level = levels.get(p.id)?.level || 0;
    setBadges(tile, { audio: p.audio, video: p.video, speaking: p.audio && level > 0.02 });
  }
}
