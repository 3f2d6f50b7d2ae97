// Small helpers to build the pages without inline scripts or styles.

/** An element with attributes and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let nextId = 0;
/** A labelled input: [label, input]. */
export function field(label, attrs = {}) {
  const id = attrs.id || `f${++nextId}`;
  const input = h('input', { ...attrs, id });
  return [h('label', { for: id }, label), input];
}

export function say(message) {
  const status = document.getElementById('status');
  status.textContent = '';
  // A new text node each time, so the same sentence is announced again.
  setTimeout(() => { status.textContent = message; }, 10);
}

/** Times in the program's zone, with the zone named. */
export function timeFmt(tz) {
  const f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hour: '2-digit', minute: '2-digit', hour12: false });
  return (iso) => f.format(new Date(iso));
}

export function dateTimeFmt(tz) {
  const f = new Intl.DateTimeFormat('en-US', {
    timeZone: tz, year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
  });
  return (iso) => `${f.format(new Date(iso))} ${tz}`;
}

/** Saves a blob as a file (a download the browser handles). */
export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, class: 'skip' }, name);
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
}

/** A span of time on one line: "Dec 1, 2026, 08:00–09:00 America/New_York". */
export function spanFmt(tz) {
  const day = new Intl.DateTimeFormat('en-US', { timeZone: tz, year: 'numeric', month: 'short', day: 'numeric' });
  const time = timeFmt(tz);
  return (start, end) => `${day.format(new Date(start))}, ${time(start)}–${time(end)} ${tz}`;
}
