// "Today": the day's sessions this account may see (a clinician: their
// own; admins and schedulers: all), with who waits and who is in the room
// pushed live by the server (Server-Sent Events), "Start session" (the
// clinician's room in a new tab with a fresh link) and "Copy link" for
// each participant.

import { call, describe } from './api.js';
import { h, say, timeFmt } from './dom.js';

let source = null;

export function stopLive() {
  if (source) { source.close(); source = null; }
}

const KIND = { couple: 'Couple session', group: 'Group session', individual: 'Individual session' };
const ROLE = { clinician: 'Clinician', patient: 'Patient', partner: 'Partner', observer: 'Observer' };

export async function todayPage(main, me) {
  const list = h('div', { id: 'sessions' }, h('p', {}, 'Loading…'));
  const heading = h('p', { class: 'meta', id: 'today-date' });
  main.append(h('h1', {}, 'Today'), heading, list);
  let today;
  try {
    today = await call('GET', '/console/api/today');
  } catch (e) {
    list.replaceChildren(h('p', { class: 'error' }, describe(e)));
    return;
  }
  const tz = today.timezone;
  const time = timeFmt(tz);
  const day = new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
    .format(new Date(`${today.date}T12:00:00Z`));
  heading.textContent = `${day} · times in ${tz}`;
  if (!today.sessions.length) {
    list.replaceChildren(h('p', {}, me.account.roles.includes('admin') || me.account.roles.includes('scheduler')
      ? 'No sessions are scheduled today.' : 'You have no sessions today.'));
    return;
  }
  const names = {};
  list.replaceChildren(...today.sessions.map((s) => {
    const people = [s.clinician, ...s.participants];
    for (const p of people) names[`${s.id}/${p.id}`] = p.name;
    const waiting = h('span', { 'data-waiting': s.id }, 'Waiting: 0');
    const inRoom = h('span', { 'data-in-room': s.id }, 'In the room: 0');
    const who = h('p', { class: 'meta', 'data-who': s.id }, 'Nobody has arrived yet.');
    const start = h('button', { type: 'button' }, 'Start session');
    start.addEventListener('click', () => startSession(s));
    return h('section', { class: 'card', 'aria-labelledby': `title-${s.id}`, 'data-session': s.id },
      h('h2', { id: `title-${s.id}` }, s.title),
      h('p', { class: 'meta' }, `${time(s.starts_at)}–${time(s.ends_at)} ${tz} · ${KIND[s.kind] || s.kind}${s.status === 'cancelled' ? ' · cancelled' : ''}`),
      h('div', { class: 'live', 'aria-live': 'polite' }, waiting, inRoom),
      who,
      start,
      h('ul', { class: 'roster', 'aria-label': `Roster of ${s.title}` }, people.map((p) => h('li', {},
        h('span', {}, `${p.name} · ${ROLE[p.role] || p.role}${p.revoked ? ' · revoked' : ''}`),
        p.role === 'clinician' ? null : h('button', {
          type: 'button', class: 'secondary', 'aria-describedby': `title-${s.id}`,
          onclick: () => copyLink(s, p),
        }, 'Copy link'),
      ))),
    );
  }));
  stopLive();
  source = new EventSource('/console/api/live');
  source.addEventListener('occupancy', (event) => {
    const { sessions } = JSON.parse(event.data);
    for (const s of today.sessions) {
      const o = sessions[s.id] || { waiting: [], in_room: [] };
      const set = (selector, text) => { const el = main.querySelector(selector); if (el && el.textContent !== text) el.textContent = text; };
      set(`[data-waiting="${s.id}"]`, `Waiting: ${o.waiting.length}`);
      set(`[data-in-room="${s.id}"]`, `In the room: ${o.in_room.length}`);
      const name = (id) => names[`${s.id}/${id}`] || id;
      const parts = [];
      if (o.waiting.length) parts.push(`Waiting: ${o.waiting.map(name).join(', ')}`);
      if (o.in_room.length) parts.push(`In the room: ${o.in_room.map(name).join(', ')}`);
      set(`[data-who="${s.id}"]`, parts.length ? parts.join('. ') : 'Nobody has arrived yet.');
    }
  });
  source.addEventListener('signed_out', () => stopLive());
}

async function startSession(s) {
  // Opened at once (a tab opened after an await is a blocked pop-up), then
  // sent to the fresh link.
  const tab = window.open('about:blank', '_blank');
  try {
    const { url } = await call('POST', `/console/api/sessions/${s.id}/start`);
    if (tab) tab.location.href = url;
    else window.location.href = url;
  } catch (e) {
    if (tab) tab.close();
    say(describe(e));
  }
}

async function copyLink(s, person) {
  try {
    const { invites } = await call('POST', `/console/api/sessions/${s.id}/links`);
    const invite = invites.find((i) => i.participant_id === person.id);
    if (!invite) throw new Error(`${person.name} has no link`);
    await navigator.clipboard.writeText(invite.url);
    say(`Link for ${person.name} copied.`);
  } catch (e) {
    say(`The link could not be copied: ${describe(e)}`);
  }
}
