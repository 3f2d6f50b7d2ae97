// "Attendance": a date range's sessions with each person's attended
// minutes, late join, early leave and disconnects; the weekly IOP report
// per patient with a chart of hours against the program's weekly target.
// "Download CSV" and "Download JSON" fetch the same report from /v1 (each
// download is in the export audit with this staff account as the actor).
// The 42 CFR Part 2 notice is shown with every report.

import { call, describe } from './api.js';
import { h, field, save, dateTimeFmt } from './dom.js';
import { midnight } from './zone.js';

function isoWeek(date) {
  const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

const withFormat = (url, format) => `${url}${url.includes('?') ? '&' : '?'}format=${format}`;
const mins = (s) => `${Math.floor((s || 0) / 60)} min`;

export function attendancePage(main, me) {
  const tz = me.timezone;
  const when = dateTimeFmt(tz);
  const today = new Date().toISOString().slice(0, 10);
  const out = h('div', { id: 'report' });
  const error = h('p', { class: 'error', role: 'alert' });
  let current = null; // { url, name } of the report shown

  const [weekLabel, week] = field('Week', { type: 'week', value: isoWeek(new Date()), required: true });
  const weekForm = h('form', { class: 'card' }, h('h2', {}, 'Weekly IOP report'), weekLabel, week, h('button', { type: 'submit' }, 'Show weekly report'));
  weekForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await show(`/v1/attendance/weekly?week=${encodeURIComponent(week.value)}`, `attendance-${week.value}`, weekly);
  });

  const [fromLabel, from] = field('From', { type: 'date', value: today, required: true });
  const [toLabel, to] = field('To', { type: 'date', value: today, required: true });
  const rangeForm = h('form', { class: 'card' }, h('h2', {}, 'Sessions in a date range'),
    h('div', { class: 'row' }, h('div', {}, fromLabel, from), h('div', {}, toLabel, to)),
    h('button', { type: 'submit' }, 'Show sessions'));
  rangeForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const next = new Date(`${to.value}T12:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    const url = `/v1/attendance?from=${encodeURIComponent(midnight(from.value, tz))}&to=${encodeURIComponent(midnight(next.toISOString().slice(0, 10), tz))}`;
    await show(url, `attendance-${from.value}-to-${to.value}`, range);
  });

  const csv = h('button', { type: 'button', disabled: true }, 'Download CSV');
  const json = h('button', { type: 'button', disabled: true }, 'Download JSON');
  csv.addEventListener('click', () => download('csv'));
  json.addEventListener('click', () => download('json'));

  async function show(url, name, render) {
    error.textContent = '';
    try {
      const report = await call('GET', withFormat(url, 'json'));
      current = { url, name };
      csv.disabled = false;
      json.disabled = false;
      out.replaceChildren(...render(report).filter(Boolean));
    } catch (e) { error.textContent = describe(e); }
  }

  async function download(format) {
    if (!current) return;
    error.textContent = '';
    try {
      const response = await call('GET', withFormat(current.url, format), undefined, { raw: true });
      save(await response.blob(), `${current.name}.${format}`);
    } catch (e) { error.textContent = describe(e); }
  }

  function notice(report) {
    return report.notice ? h('p', { class: 'notice', id: 'part2-notice' }, report.notice) : null;
  }

  function weekly(report) {
    const target = report.weekly_minimum_minutes / 60;
    const rows = report.patients.map((p) => h('tr', {},
      h('td', {}, p.participant_id), h('td', {}, p.mrn || '—'), h('td', {}, p.hours.toFixed(2)),
      h('td', {}, String(p.days_attended)), h('td', {}, `${p.sessions_attended} of ${p.sessions_scheduled}`),
      h('td', {}, p.meets_weekly_minimum ? 'yes' : 'no')));
    const most = Math.max(target, ...report.patients.map((p) => p.hours), 1);
    const chart = h('div', { class: 'chart', role: 'group', 'aria-label': `Hours against the weekly target of ${target} h` },
      report.patients.map((p) => h('div', { class: 'bar-row' },
        h('span', {}, p.participant_id),
        h('meter', { min: 0, max: most, low: target * 0.999, optimum: most, value: p.hours, 'aria-label': `${p.participant_id}: ${p.hours.toFixed(2)} of ${target} hours` }),
        h('span', {}, `${p.hours.toFixed(1)} / ${target} h`))));
    return [
      h('h2', {}, `Week ${report.week} (${report.first_date} to ${report.last_date}, ${report.timezone})`),
      report.patients.length ? chart : h('p', {}, 'No patient attended or was scheduled this week.'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Patient', 'MRN', 'Hours', 'Days', 'Sessions attended', `Meets ${target} h`].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))),
      notice(report),
    ];
  }

  // A range's sessions, or one session (its report has no `sessions`).
  function range(report) {
    const one = !report.sessions;
    const sessions = one ? [report] : report.sessions;
    const parts = [h('h2', {}, one ? 'One session' : `${sessions.length} session${sessions.length === 1 ? '' : 's'}`)];
    for (const s of sessions) {
      parts.push(h('h3', {}, `${s.session.title} · ${when(s.session.starts_at)}`),
        one ? null : h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Show only ${s.session.title} on ${when(s.session.starts_at)}`,
          onclick: () => show(`/v1/attendance/sessions/${s.session.id}`, `attendance-session-${s.session.id}`, range),
        }, 'Show only this session'),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Person', 'Role', 'Attended', 'Late join', 'Early leave', 'Disconnects'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, s.participants.map((p) => h('tr', {},
            h('td', {}, p.participant_id), h('td', {}, p.role), h('td', {}, `${p.attended_minutes} min`),
            h('td', {}, mins(p.late_seconds)), h('td', {}, mins(p.early_leave_seconds)), h('td', {}, String(p.disconnects))))))));
    }
    parts.push(notice(report));
    return parts;
  }

  main.append(h('h1', {}, 'Attendance'), h('p', { class: 'meta' }, `Dates and times in ${tz}.`),
    weekForm, rangeForm, h('div', {}, csv, json), error, out);
}
