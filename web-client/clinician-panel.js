// The clinician's panel beside the call: the session timer and End
// session, the waiting list (Admit, Deny, Admit all), the people in the
// session grouped by couple (mute, allow unmute, remove, Pin, Spotlight,
// connection quality; Breakout per couple with its state), raised hands
// (Lower hand), and breakouts in group sessions (length, with me or on
// their own, Bring everyone back, Message to breakouts). Only a
// clinician's page shows it.

import { PANEL, roleName } from './messages.js';
import { app } from './state.js';
import { $, el, announce, confirmAction } from './ui.js';
import { renderTiles } from './call-grid.js';
import { onWaitingChanged, waitingTitle, wireWaitingAlert } from './waiting-alert.js';

function personRow(key, person, buttons, extra, tag = 'li') {
  const nameId = `n-${key}`;
  const li = el(tag, { class: 'person', 'data-id': person.id });
  const who = el('div', { class: 'who' },
    el('span', { class: 'person-name', id: nameId, text: person.name }),
    el('span', { class: 'person-role', text: roleName(person.role) }),
    extra || null);
  const actions = el('div', { class: 'actions' });
  for (const b of buttons) {
    const button = el('button', { type: 'button', class: `btn small ${b.cls || 'secondary'}`, text: b.label, 'aria-describedby': nameId, 'data-action': b.action });
    if (b.pressed != null) button.setAttribute('aria-pressed', String(b.pressed));
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
  const focusId = inList ? active.closest('[data-id]')?.dataset.id : null;
  const focusAction = inList ? active.dataset.action : null;
  const rowsBefore = [...list.querySelectorAll('[data-id]')];
  const oldIndex = inList ? rowsBefore.indexOf(active.closest('[data-id]')) : -1;
  list.replaceChildren(...rows);
  if (!inList) return;
  const rowsAfter = [...list.querySelectorAll('[data-id]')];
  const same = rowsAfter.find((li) => li.dataset.id === focusId);
  const target = (same && same.querySelector(`:scope > .actions [data-action="${focusAction}"], :scope > .couple-head [data-action="${focusAction}"]`))
    || rowsAfter[Math.min(oldIndex, rowsAfter.length - 1)]?.querySelector('button')
    || fallback;
  if (target) target.focus();
}

// ---------------------------------------------------------------- the waiting list

export function updateLobby(waiting) {
  const before = new Set(app.lobby.map((w) => w.id));
  app.lobby = waiting;
  const arrivals = waiting.filter((w) => !before.has(w.id));
  if (arrivals.length) announce(PANEL.waiting(arrivals.map((w) => w.name)));
  onWaitingChanged(waiting.length, arrivals.length);
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
  document.title = waitingTitle(PANEL.pageTitle(app.lobby.length, app.call?.session?.title));
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

function togglePin(p) {
  app.pinned = app.pinned === p.id ? null : p.id;
  announce(app.pinned ? PANEL.pinned(p.name) : PANEL.unpinned(p.name));
  renderPeople();
  renderTiles();
}

function toggleSpotlight(p) {
  const on = app.call.spotlight === p.id;
  app.call.setSpotlight(on ? null : p.id);
}

function personButtons(p) {
  const call = app.call;
  const buttons = [];
  if (p.audio) buttons.push({ label: PANEL.mute, action: 'mute', onClick: () => mutePerson(p) });
  else if (app.lockedByMe.has(p.id)) buttons.push({ label: PANEL.allowUnmute, action: 'allow', onClick: () => allowUnmute(p) });
  buttons.push({ label: PANEL.pin, action: 'pin', pressed: app.pinned === p.id, onClick: () => togglePin(p) });
  if (call.session?.kind === 'group') {
    buttons.push({ label: PANEL.spotlight, action: 'spotlight', pressed: call.spotlight === p.id, onClick: () => toggleSpotlight(p) });
  }
  buttons.push({ label: PANEL.remove, action: 'remove', cls: 'danger-quiet', onClick: () => removePerson(p) });
  return buttons;
}

/** The people in the room by couple (household), in order of arrival; people of no household last. */
export function byCouple(people) {
  const groups = new Map();
  for (const p of people) {
    const key = p.household ? `h:${p.household}` : '';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const others = groups.get('') || [];
  groups.delete('');
  return { couples: [...groups.entries()].map(([k, members]) => ({ household: k.slice(2), members })), others };
}

function coupleRow(household, members) {
  const call = app.call;
  const key = rowKey(`c-${household}`);
  const nameId = `n-c${key}`;
  const b = app.breakouts.get(household);
  const li = el('li', { class: 'couple', 'data-id': `couple:${household}`, 'data-household': household });
  const state = el('span', { class: 'person-meta couple-state', 'data-breakout-state': household });
  const head = el('div', { class: 'couple-head' },
    el('div', { class: 'who' }, el('span', { class: 'person-name', id: nameId, text: PANEL.couple(household) }), state));
  if (call.session?.kind === 'group') {
    const button = b
      ? el('button', { type: 'button', class: 'btn small secondary', text: PANEL.endBreakout, 'aria-describedby': nameId, 'data-action': 'end-breakout' })
      : el('button', { type: 'button', class: 'btn small primary', text: PANEL.breakout, 'aria-describedby': nameId, 'data-action': 'breakout' });
    button.addEventListener('click', () => (b ? call.endBreakout(household) : startBreakout(household)));
    head.append(el('div', { class: 'actions' }, button));
  }
  const inner = el('ul', { class: 'people couple-members', 'aria-labelledby': nameId });
  for (const p of members) inner.append(memberRow(p));
  li.append(head, inner);
  return li;
}

function memberRow(p) {
  const state = PANEL.mediaState(p.audio, p.video);
  const quality = el('span', { class: 'quality', 'data-quality': 'unknown' },
    el('span', { class: 'quality-dot', 'aria-hidden': 'true' }),
    el('span', { class: 'quality-text', text: PANEL.measuring }));
  return personRow(rowKey(`p-${p.id}`), p, personButtons(p), el('span', { class: 'person-meta' }, el('span', { text: state }), quality));
}

export function renderPeople() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  const people = [...call.participants.values()];
  const { couples, others } = byCouple(people);
  const rows = couples.map((c) => coupleRow(c.household, c.members));
  if (others.length && couples.length) {
    const li = el('li', { class: 'couple', 'data-id': 'couple:' });
    const nameId = 'n-others';
    li.append(el('div', { class: 'couple-head' }, el('div', { class: 'who' }, el('span', { class: 'person-name', id: nameId, text: PANEL.others }))));
    const inner = el('ul', { class: 'people couple-members', 'aria-labelledby': nameId });
    for (const p of others) inner.append(memberRow(p));
    li.append(inner);
    rows.push(li);
  } else {
    for (const p of others) rows.push(memberRow(p));
  }
  replaceRows($('people-list'), rows, $('people-h'));
  $('people-empty').hidden = people.length > 0;
  for (const p of [...app.lockedByMe]) if (!call.participants.has(p)) app.lockedByMe.delete(p);
  renderQuality();
  renderBreakoutStates();
}

// How long someone may be in the room with nothing arriving from them
// before the panel says they are not connected (instead of "Measuring").
const NOT_CONNECTED_MS = 12000;

export function renderQuality() {
  for (const li of $('people-list').querySelectorAll('li.person')) {
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
  renderBreakoutStates();
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

function startBreakout(household) {
  const minutes = Number.parseInt($('breakout-minutes').value, 10);
  const withMe = $('with-me').checked;
  app.call.breakout(household, withMe, Number.isFinite(minutes) && minutes > 0 ? Math.min(minutes, 180) : null);
}

/** mm:ss until `iso`. */
function timeLeft(iso) {
  const secs = Math.max(0, Math.ceil((Date.parse(iso) - Date.now()) / 1000));
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
}

export function onBreakout(m) {
  if (m.active) app.breakouts.set(m.household, m);
  else {
    app.breakouts.delete(m.household);
    for (const p of app.call.participants.values()) if (p.household === m.household) app.breakoutSpeaking.delete(p.id);
  }
  announce(m.active ? PANEL.breakoutStarted(m.household) : PANEL.breakoutEnded(m.household));
  renderPeople();
  renderTiles();
}

export function onBreakoutEnding(m) {
  announce(PANEL.breakoutEndingSoon(m.household));
}

export function onSpeaking(m) {
  if (m.speaking) app.breakoutSpeaking.add(m.participant);
  else app.breakoutSpeaking.delete(m.participant);
  renderBreakoutStates();
}

/** Each couple's breakout state (time left, who speaks inside), and the breakout controls. */
export function renderBreakoutStates() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  for (const state of $('people-list').querySelectorAll('[data-breakout-state]')) {
    const household = state.dataset.breakoutState;
    const b = app.breakouts.get(household);
    let text = PANEL.inMainRoom;
    if (b) {
      text = PANEL.inBreakoutFor(b, b.ends_at ? timeLeft(b.ends_at) : null);
      if (!b.with_clinician) {
        const speaking = [...call.participants.values()]
          .filter((p) => p.household === household && app.breakoutSpeaking.has(p.id))
          .map((p) => p.name);
        text += ` · ${speaking.length ? PANEL.speakingIn(speaking) : PANEL.quietIn}`;
      }
    }
    state.classList.toggle('in-breakout', !!b);
    if (state.textContent !== text) state.textContent = text;
  }
  const active = [...app.breakouts.values()];
  const summary = active.length
    ? active.map((b) => PANEL.inBreakout(b)).join(' ')
    : PANEL.noBreakouts;
  if ($('breakout-summary').textContent !== summary) $('breakout-summary').textContent = summary;
  $('btn-bring-back').disabled = !active.length;
  $('btn-message-breakouts').disabled = !active.length;
}

// ---------------------------------------------------------------- raised hands

export function renderHands() {
  const call = app.call;
  if (!call || call.me?.role !== 'clinician') return;
  const rows = call.hands.map((h) => {
    const p = call.participants.get(h.id) || { id: h.id, name: h.id, role: '' };
    return personRow(rowKey(`h-${h.id}`), p, [
      { label: PANEL.lowerHand, action: 'lower', onClick: () => { call.lowerHandOf(h.id); announce(PANEL.handLowered(p.name)); } },
    ], el('span', { class: 'person-meta', text: PANEL.handSince(h.since) }));
  });
  replaceRows($('hands-list'), rows, $('hands-h'));
  $('hands-count').textContent = String(call.hands.length);
  $('hands-empty').hidden = call.hands.length > 0;
}

export function wirePanel() {
  $('btn-end').addEventListener('click', endSession);
  $('btn-admit-all').addEventListener('click', () => { app.call.admitAll(); announce(PANEL.admittingAll); });
  wireWaitingAlert($('btn-notify'), () => PANEL.pageTitle(app.lobby.length, app.call?.session?.title));
  $('btn-bring-back').addEventListener('click', () => app.call.endAllBreakouts());
  $('breakout-message-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('breakout-text').value.trim();
    if (!text) return;
    app.call.messageBreakouts(text);
    $('breakout-text').value = '';
    announce(PANEL.messageSent);
  });
}
