// "Schedule": book a session or a weekly series for the people on a
// roster, at one of their common free slots (POST /v1/slots/search) or a
// time of one's own; the sessions to come, to reschedule, cancel, or
// revoke a participant. A clash is told in words, with names and times.

import { call, describe } from './api.js';
import { h, field, say, dateTimeFmt, spanFmt } from './dom.js';
import { midnight } from './zone.js';

const DAY = 86400000;

export function schedulePage(main, me) {
  const tz = me.timezone;
  const when = dateTimeFmt(tz);
  const span = spanFmt(tz);
  const today = new Date().toISOString().slice(0, 10);
  const inAWeek = new Date(Date.now() + 7 * DAY).toISOString().slice(0, 10);
  const error = h('p', { class: 'error', role: 'alert', id: 'schedule-error' });
  const booked = h('p', { class: 'ok', role: 'status', id: 'booked' });
  let people = [];

  const [titleLabel, title] = field('Title', { required: true, value: 'Couple session' });
  const kind = h('select', { id: 'kind' }, ['couple', 'group', 'individual'].map((k) => h('option', { value: k }, k)));
  const [peopleLabel, ids] = field('People (ids, comma-separated)', { required: true, placeholder: 'dr-cruz, pat-1, par-1' });
  const [lengthLabel, length] = field('Length (minutes)', { type: 'number', min: 5, max: 1440, value: 60, required: true });
  const [fromLabel, from] = field('Search from', { type: 'date', value: today, required: true });
  const [toLabel, to] = field('Search to', { type: 'date', value: inAWeek, required: true });
  const slots = h('fieldset', { id: 'slots', hidden: true }, h('legend', {}, 'Suggested slots'));
  const [ownLabel, own] = field('Or a start of your own (local time)', { type: 'datetime-local' });
  const weekly = h('input', { type: 'checkbox', id: 'weekly' });
  const [weeksLabel, weeks] = field('Number of weeks', { type: 'number', min: 2, max: 52, value: 4 });
  const find = h('button', { type: 'button' }, 'Find common slots');
  const book = h('button', { type: 'submit' }, 'Book');

  async function lookUp() {
    const list = ids.value.split(',').map((s) => s.trim()).filter(Boolean);
    const found = await Promise.all(list.map((id) => call('GET', `/v1/people/${encodeURIComponent(id)}`).catch(() => null)));
    const missing = list.filter((_, i) => !found[i]);
    if (missing.length) throw new Error(`Not in the directory: ${missing.join(', ')}.`);
    people = found;
    const clinicians = people.filter((p) => p.role === 'clinician');
    if (clinicians.length !== 1) throw new Error('The roster needs exactly one clinician.');
    return people;
  }
  const nameOf = (id) => people.find((p) => p.id === id)?.name || id;

  find.addEventListener('click', async () => {
    error.textContent = '';
    try {
      await lookUp();
      const end = new Date(`${to.value}T12:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 1);
      const { slots: found } = await call('POST', '/v1/slots/search', {
        people: people.map((p) => p.id), duration_minutes: Number(length.value),
        from: midnight(from.value, tz), to: midnight(end.toISOString().slice(0, 10), tz), limit: 8,
      });
      slots.replaceChildren(h('legend', {}, 'Suggested slots'));
      if (!found.length) slots.append(h('p', {}, 'No common free time in these dates. Try other dates or a shorter length.'));
      found.forEach((s, i) => {
        const id = `slot-${i}`;
        slots.append(h('div', {}, h('input', { type: 'radio', name: 'slot', id, value: s.starts_at, checked: i === 0 }),
          h('label', { for: id, class: 'inline' }, span(s.starts_at, s.ends_at))));
      });
      slots.hidden = false;
    } catch (e) { error.textContent = describe(e); }
  });

  const form = h('form', { class: 'card', id: 'book-form' }, h('h2', {}, 'Book a session or a weekly series'),
    titleLabel, title, h('label', { for: 'kind' }, 'Kind'), kind, peopleLabel, ids, lengthLabel, length,
    h('div', { class: 'row' }, h('div', {}, fromLabel, from), h('div', {}, toLabel, to)), find, slots, ownLabel, own,
    h('div', { class: 'check' }, weekly, h('label', { for: 'weekly', class: 'inline' }, 'Repeat weekly')), weeksLabel, weeks,
    book, error, booked);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    booked.textContent = '';
    try {
      await lookUp();
      const chosen = form.querySelector('input[name="slot"]:checked')?.value;
      let startsAt = chosen ? new Date(chosen) : null;
      if (own.value) startsAt = new Date(midnightOf(own.value));
      if (!startsAt) throw new Error('Choose a suggested slot or a start of your own.');
      const minutes = Number(length.value);
      const clinician = people.find((p) => p.role === 'clinician');
      const roster = {
        clinician: { id: clinician.id, name: clinician.name },
        participants: people.filter((p) => p !== clinician).map((p) => ({ id: p.id, name: p.name, role: p.role, household: p.household || undefined })),
      };
      if (weekly.checked) {
        const local = localIso(startsAt, tz);
        const series = await call('POST', '/v1/series', {
          title: title.value, kind: kind.value, timezone: tz, rrule: `FREQ=WEEKLY;COUNT=${Number(weeks.value)}`,
          first_starts_at: local, duration_minutes: minutes, ...roster,
        });
        booked.textContent = `Booked a weekly series of ${series.sessions.length} sessions from ${when(series.occurrences[0].starts_at)}.`;
      } else {
        const session = await call('POST', '/v1/sessions', {
          title: title.value, kind: kind.value, timezone: tz, starts_at: startsAt.toISOString(),
          ends_at: new Date(startsAt.getTime() + minutes * 60000).toISOString(), ...roster,
        });
        booked.textContent = `Booked ${session.title} on ${when(session.starts_at)}.`;
      }
      say(booked.textContent);
      await upcoming();
    } catch (e) { error.textContent = clash(e); }
  });

  /** A 409 in words: who already has a session, and when. */
  function clash(e) {
    const conflicts = e?.details?.conflicts || e?.conflicts;
    if (e?.status === 409 && Array.isArray(conflicts) && conflicts.length) {
      return `Nothing was booked: ${conflicts.slice(0, 5).map((c) => `${nameOf(c.participant_id)} already has a session at ${when(c.starts_at)}`).join('; ')}${conflicts.length > 5 ? `; and ${conflicts.length - 5} more` : ''}. Choose another time.`;
    }
    return describe(e);
  }

  // The clock time in `tz` as the local ISO the series API takes.
  function localIso(date, zone) {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      .formatToParts(date).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}`;
  }
  // A datetime-local value read in the program's zone.
  function midnightOf(value) {
    const [date, clock] = value.split('T');
    const [hh, mm] = clock.split(':').map(Number);
    return new Date(new Date(midnight(date, tz)).getTime() + (hh * 60 + mm) * 60000).toISOString();
  }

  const list = h('div', { id: 'upcoming' });
  async function upcoming() {
    const now = new Date();
    const { sessions } = await call('GET', `/v1/sessions?from=${encodeURIComponent(now.toISOString())}&to=${encodeURIComponent(new Date(now.getTime() + 14 * DAY).toISOString())}`, undefined, { quiet: true });
    const live = sessions.filter((s) => s.status !== 'cancelled');
    list.replaceChildren(...(live.length ? live.map(card) : [h('p', {}, 'No sessions in the next 14 days.')]));
  }
  function card(s) {
    const msg = h('p', { role: 'status' });
    const [newLabel, newStart] = field('New start (local time)', { type: 'datetime-local' });
    const act = async (fn, done) => {
      msg.textContent = '';
      try { await fn(); say(done); await upcoming(); } catch (e) { msg.textContent = clash(e); msg.className = 'error'; }
    };
    return h('section', { class: 'card', 'aria-labelledby': `up-${s.id}` },
      h('h3', { id: `up-${s.id}` }, `${s.title} · ${span(s.starts_at, s.ends_at)}`),
      h('ul', { class: 'roster', 'aria-label': `Roster of ${s.title}` }, [s.clinician, ...s.participants].map((p) => h('li', {},
        h('span', {}, `${p.name} · ${p.role}${p.revoked ? ' · revoked' : ''}`),
        p.role === 'clinician' || p.revoked ? null : h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Revoke ${p.name}`,
          onclick: () => act(() => call('POST', `/v1/sessions/${s.id}/participants/${encodeURIComponent(p.id)}/revoke`), `${p.name}'s links no longer work.`),
        }, 'Revoke')))),
      newLabel, newStart,
      h('button', { type: 'button', onclick: () => act(() => {
        if (!newStart.value) throw new Error('Choose the new start first.');
        return call('PATCH', `/v1/sessions/${s.id}`, { starts_at: midnightOf(newStart.value) });
      }, `${s.title} moved.`) }, 'Reschedule'),
      h('button', { type: 'button', class: 'secondary', onclick: () => act(() => call('DELETE', `/v1/sessions/${s.id}`), `${s.title} is cancelled.`) }, 'Cancel session'),
      msg);
  }

  main.append(h('h1', {}, 'Schedule'), h('p', { class: 'meta' }, `Times in ${tz}.`), form, h('h2', {}, 'Next 14 days'), list);
  upcoming().catch((e) => { list.replaceChildren(h('p', { class: 'error' }, describe(e))); });
}
