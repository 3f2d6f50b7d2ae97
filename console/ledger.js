// "Ledger": the attendance ledger's verification (recomputing the hash
// chain): the last one (from the export audit, for admins), its event
// count and head hash, and "Verify now".

import { call, describe } from './api.js';
import { h, dateTimeFmt } from './dom.js';

export async function ledgerPage(main, me) {
  const when = dateTimeFmt(me.timezone);
  const last = h('p', { id: 'last-verification' }, 'No verification from this page yet.');
  const result = h('dl', { id: 'verification' });
  const error = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'button' }, 'Verify now');
  button.addEventListener('click', async () => {
    error.textContent = '';
    button.disabled = true;
    try {
      const v = await call('GET', '/v1/attendance/verify');
      show(v, new Date().toISOString());
    } catch (e) { error.textContent = describe(e); }
    button.disabled = false;
  });
  function show(v, at) {
    const ok = v.status === 'ok';
    result.replaceChildren(
      h('dt', {}, 'Result'), h('dd', { class: ok ? 'ok' : 'error' }, ok ? 'The chain is intact.' : `Broken at event ${v.seq}: ${v.problem}`),
      h('dt', {}, 'Events'), h('dd', {}, String(v.events ?? '—')),
      h('dt', {}, 'Head hash'), h('dd', { class: 'secret' }, v.head || '—'),
      h('dt', {}, 'Verified'), h('dd', {}, when(at)));
    last.textContent = `Last verification: ${when(at)}.`;
  }
  main.append(h('h1', {}, 'Ledger'), last, button, error, result);
  if (me.account.roles.includes('admin')) {
    try {
      const { exports } = await call('GET', '/v1/audit/exports', undefined, { quiet: true });
      const v = exports.filter((e) => e.what === 'verify').sort((a, b) => b.at - a.at)[0];
      if (v) last.textContent = `Last verification: ${when(new Date(v.at).toISOString())} by ${v.actor}, ${v.rows} events.`;
    } catch { /* the button still works */ }
  }
}
