// The clinician's panel beside the call: the session timer and End
// session, the waiting list (Admit, Deny, Admit all), the people in the
// session (mute, allow unmute, remove, connection quality) and breakout
// rooms in group sessions. Only a clinician's page shows it.

import { PANEL, roleName } from './messages.js';
import { app } from './state.js';
import { $, el, announce, confirmAction } from './ui.js';

function personRow(key, person, buttons, extra) {
  const nameId = `n-${key}`;
  const li = el('li', { class: 'person', 'data-id': person.id });
  const who = el('div', { class: 'who' },
    el('span', { class: 'person-name', id: nameId, text: person.name }),
    el('span', { class: 'person-role', text: roleName(person.role) }),
    extra || null);
  const actions = el('div', { class: 'actions' });
  for (const b of buttons) {
    const button = el('button', { type: 'button', class: `btn small ${b.cls || 'secondary'}`, text: b.label, 'aria-describedby': nameId, 'data-action': b.action });
    button.addEventListener('click', b.onClick);
    actions.append(button);
  }
  li.append(who, actions);
  return li;
}

/** A short, stable number per row for element ids (1, 2, 3… in order of first use). */
function rowKey(id) {
  if (!app.rowKeys.has(id)) app.rowKeys.set(id, String(app.rowKeys.size + 1));
  return app.rowKeys.get(id);
}

/** Replaces a list's rows, keeping keyboard focus on the same person and action. */
function replaceRows(list, rows, fallback) {
  const active = document.activeElement;
  const inList = active && list.contains(active);
  const focusId = inList ? active.closest('li')?.dataset.id : null;
  const focusAction = inList ? active.dataset.action : null;
  const oldIndex = inList ? [...list.children].indexOf(active.closest('li')) : -1;
  list.replaceChildren(...rows);
  if (!inList) return;
  const same = [...list.children].find((li) => li.dataset.id === focusId);
  const target = (same && same.querySelector(`[data-action="${focusAction}"]`))
    || list.children[Math.min(oldIndex, list.children.length - 1)]?.querySelector('button')
    || fallback;
  if (target) target.focus();
}

// ---------------------------------------------------------------- the waiting list

export function updateLobby(waiting) {
  const before = new Set(app.lobby.map((w) => w.id));
  app.lobby = waiting;
  const arrivals = waiting.filter((w) => !before.has(w.id));
  if (arrivals.length) announce(PANEL.waiting(arrivals.map((w) => w.name)));
  renderLobby();
}

function renderLobby() {
  const list = $('waiting-list');
  const rows = app.lobby.map((w) => {
    const left = app.recentlyLeft.get(w.id);
    const back = left && Date.now() - left < 15 * 60000;
    return personRow(rowKey(`w-${w.id}`), w, [
      { label: PANEL.admit, action: 'admit', cls: 'primary', onClick: () => { app.call.admit(w.id); announce(PANEL.admitting(w.name)); } },
      { label: PANEL.deny, action: 'deny', cls: 'secondary', onClick: () => denyPerson(w) },
    ], el('span', { class: 'person-meta', text: back ? PANEL.backSince(w.since) : PANEL.waitingSince(w.since) }));
  });
  replaceRows(list, rows, $('btn-admit-all').disabled ? $('waiting-h') : $('btn-admit-all'));
  $('waiting-count').textContent = String(app.lobby.length);
  $('waiting-empty').hidden = app.lobby.length > 0;
  $('btn-admit-all').disabled = app.lobby.length === 0;
  document.title = PANEL.pageTitle(app.lobby.length, app.call?.session?.title);
}

async function denyPerson(w) {
  const ok = await confirmAction(PANEL.denyConfirm(w.name));
  if (ok) {
    app.call.deny(w.id);
    announce(PANEL.denied(w.name));
  }
}

// ---------------------------------------------------------------- the people in the session

async function removePerson(p) {
  const ok = await confirmAction(PANEL.removeConfirm(p.name));
  if (ok) {
    app.call.remove(p.id);
    announce(PANEL.removed(p.name));
  }
}

function mutePerson(p) {
  const allow = $('let-unmute').checked;
  app.call.mute(p.id, 'audio', allow);
  if (!allow) app.lockedByMe.add(p.id);
  announce(PANEL.muted(p.name));
}

function allowUnmute(p) {
  app.call.allowUnmute(p.id, 'audio');
  app.lockedByMe.delete(p.id);
  announce(PANEL.mayUnmute(p.name));
  renderPeople();
}

export function renderPeople() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  const people = [...call.participants.values()];
  const rows = people.map((p) => {
    const buttons = [];
    if (p.audio) buttons.push({ label: PANEL.mute, action: 'mute', onClick: () => mutePerson(p) });
    else if (app.lockedByMe.has(p.id)) buttons.push({ label: PANEL.allowUnmute, action: 'allow', onClick: () => allowUnmute(p) });
    buttons.push({ label: PANEL.remove, action: 'remove', cls: 'danger-quiet', onClick: () => removePerson(p) });
    const state = PANEL.mediaState(p.audio, p.video);
    const quality = el('span', { class: 'quality', 'data-quality': 'unknown' },
      el('span', { class: 'quality-dot', 'aria-hidden': 'true' }),
      el('span', { class: 'quality-text', text: PANEL.measuring }));
    return personRow(rowKey(`p-${p.id}`), p, buttons, el('span', { class: 'person-meta' }, el('span', { text: state }), quality));
  });
  replaceRows($('people-list'), rows, $('people-h'));
  $('people-empty').hidden = people.length > 0;
  for (const p of [...app.lockedByMe]) if (!call.participants.has(p)) app.lockedByMe.delete(p);
  renderQuality();
}

// How long someone may be in the room with nothing arriving from them
// before the panel says they are not connected (instead of "Measuring").
const NOT_CONNECTED_MS = 12000;

export function renderQuality() {
  for (const li of $('people-list').children) {
    const id = li.dataset.id;
    const q = app.quality.get(id);
    const box = li.querySelector('.quality');
    if (!box) continue;
    let grade = 'unknown';
    let text = PANEL.measuring;
    const since = app.inRoomSince.get(id);
    // Only someone whose microphone or camera is on is expected to send.
    const person = app.call?.participants.get(id);
    const sends = !!person && (person.audio || person.video);
    if (sends && !app.heardFrom.has(id) && since && Date.now() - since > NOT_CONNECTED_MS) {
      grade = 'poor';
      text = PANEL.notConnected;
    } else if (q) {
      const rate = PANEL.bitrate(q.kbps);
      if (!q.measured) {
        text = PANEL.measuring;
      } else if (q.lossPct == null || !q.receiving) {
        grade = q.kbps > 8 ? 'good' : 'unknown';
        text = q.kbps > 8 ? PANEL.audioOnly(rate) : PANEL.noMedia;
      } else {
        grade = q.lossPct < 2 ? 'good' : q.lossPct < 8 ? 'fair' : 'poor';
        text = PANEL.quality(PANEL.grades[grade], rate, q.lossPct);
      }
    }
    box.dataset.quality = grade;
    const t = box.querySelector('.quality-text');
    if (t.textContent !== text) t.textContent = text;
  }
}

// ---------------------------------------------------------------- the session

export function tickClock() {
  const call = app.call;
  if (!call?.session) return;
  const startMs = Date.parse(call.session.starts_at);
  const endMs = Date.parse(call.session.ends_at);
  const now = Date.now();
  const two = (n) => String(n).padStart(2, '0');
  const fmt = (secs) => {
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    return h ? `${h}:${two(m)}:${two(secs % 60)}` : `${m}:${two(secs % 60)}`;
  };
  if (now < startMs) {
    $('timer').textContent = fmt(Math.ceil((startMs - now) / 1000));
    $('timer-note').textContent = PANEL.untilStart(call.session.starts_at);
    return;
  }
  $('timer').textContent = fmt(Math.floor((now - startMs) / 1000));
  const left = Math.ceil((endMs - now) / 60000);
  $('timer-note').textContent = PANEL.elapsed(call.session.ends_at, left);
}

async function endSession() {
  const ok = await confirmAction(PANEL.endConfirm);
  if (ok) app.call.end();
}

// ---------------------------------------------------------------- breakouts

export function onBreakout(m) {
  if (m.active) app.breakouts.set(m.household, m);
  else app.breakouts.delete(m.household);
  const note = $('breakout-note');
  const active = [...app.breakouts.values()];
  note.hidden = !active.length;
  note.textContent = active.map(PANEL.inBreakout).join(' ');
  announce(m.active ? PANEL.breakoutStarted(m.household) : PANEL.breakoutEnded(m.household));
  const list = $('breakout-list');
  list.replaceChildren(...active.map((b) => {
    const li = el('li', { class: 'person', 'data-id': b.household });
    const nameId = `b-${rowKey(`b-${b.household}`)}`;
    li.append(el('div', { class: 'who' }, el('span', { class: 'person-name', id: nameId, text: PANEL.household(b.household) }),
      el('span', { class: 'person-meta', text: b.with_clinician ? PANEL.withYou : PANEL.onTheirOwn })));
    const end = el('button', { type: 'button', class: 'btn small secondary', text: PANEL.endBreakout, 'aria-describedby': nameId });
    end.addEventListener('click', () => app.call.endBreakout(b.household));
    li.append(el('div', { class: 'actions' }, end));
    return li;
  }));
}

export function wirePanel() {
  $('btn-end').addEventListener('click', endSession);
  $('btn-admit-all').addEventListener('click', () => { app.call.admitAll(); announce(PANEL.admittingAll); });
  $('breakout-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const household = $('household').value.trim();
    if (!household) return;
    app.call.breakout(household, $('with-me').checked);
    $('household').value = '';
  });
}
