// "Staff" and "API keys" (admins): add, disable, reset a second factor;
// create and revoke API keys. A set-up link or a key's secret is shown
// once. The sign-in audit is on the Staff page.

import { call, describe } from './api.js';
import { h, field, say, dateTimeFmt } from './dom.js';

export async function staffPage(main, me) {
  const when = dateTimeFmt(me.timezone);
  const list = h('tbody');
  const audit = h('tbody');
  const error = h('p', { class: 'error', role: 'alert' });
  const shown = h('div', { role: 'status' });
  const [emailLabel, email] = field('Email', { type: 'email', required: true });
  const [nameLabel, name] = field('Name', { required: true });
  const [rolesLabel, roles] = field('Roles (comma-separated: admin, scheduler, clinician, compliance)', { required: true, value: 'clinician' });
  const [rosterLabel, roster] = field('Roster id (clinicians)', {});
  const form = h('form', { class: 'card' }, h('h2', {}, 'Add a staff member'), emailLabel, email, nameLabel, name, rolesLabel, roles, rosterLabel, roster,
    h('button', { type: 'submit' }, 'Add staff member'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const done = await call('POST', '/console/api/staff', { email: email.value, name: name.value, roles: roles.value, roster_id: roster.value || null });
      shown.replaceChildren(h('p', {}, `Set-up link for ${done.account.email} (works once, for 24 h; shown once):`), h('p', { class: 'secret' }, done.setup_url));
      form.reset();
      await load();
    } catch (err) { error.textContent = describe(err); }
  });
  async function act(url, done) {
    error.textContent = '';
    try { const r = await call('POST', url); done(r); await load(); } catch (err) { error.textContent = describe(err); }
  }
  async function load() {
    const { staff } = await call('GET', '/console/api/staff', undefined, { quiet: true });
    list.replaceChildren(...staff.map((a) => h('tr', {},
      h('td', {}, a.name), h('td', {}, a.email), h('td', {}, a.roles.join(', ')), h('td', {}, a.roster_id || '—'),
      h('td', {}, a.disabled_at ? 'disabled' : a.set_up ? (a.second_factor ? 'active' : 'active, no second factor') : 'not set up'),
      h('td', {},
        a.disabled_at || a.id === me.account.id ? null : h('button', { type: 'button', class: 'secondary', 'aria-label': `Disable ${a.email}`, onclick: () => act(`/console/api/staff/${a.id}/disable`, () => say(`${a.email} is disabled.`)) }, 'Disable'),
        h('button', { type: 'button', class: 'secondary', 'aria-label': `Reset second factor of ${a.email}`, onclick: () => act(`/console/api/staff/${a.id}/reset`, (r) => shown.replaceChildren(h('p', {}, `New set-up link for ${a.email} (shown once):`), h('p', { class: 'secret' }, r.setup_url))) }, 'Reset second factor')))));
    const { signins } = await call('GET', '/console/api/signins', undefined, { quiet: true });
    audit.replaceChildren(...signins.slice(0, 50).map((r) => h('tr', {},
      h('td', {}, when(r.at)), h('td', {}, r.email), h('td', {}, r.event.replaceAll('_', ' ')), h('td', {}, r.address))));
  }
  main.append(h('h1', {}, 'Staff'), form, error, shown,
    h('h2', {}, 'Accounts'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Email', 'Roles', 'Roster id', 'State', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), list)),
    h('h2', {}, 'Sign-in audit'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['When', 'Email', 'Event', 'Address'].map((c) => h('th', { scope: 'col' }, c)))), audit)));
  try { await load(); } catch (err) { error.textContent = describe(err); }
}

export async function keysPage(main, me) {
  const when = dateTimeFmt(me.timezone);
  const list = h('tbody');
  const error = h('p', { class: 'error', role: 'alert' });
  const shown = h('div', { role: 'status' });
  const [labelLabel, label] = field('Label', { required: true, placeholder: 'EHR scheduler' });
  const roleId = 'key-role';
  const role = h('select', { id: roleId }, ['scheduler', 'compliance', 'admin'].map((r) => h('option', { value: r }, r)));
  const form = h('form', { class: 'card' }, h('h2', {}, 'Create an API key'), labelLabel, label, h('label', { for: roleId }, 'Role'), role,
    h('button', { type: 'submit' }, 'Create API key'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const done = await call('POST', '/console/api/api-keys', { label: label.value, role: role.value });
      shown.replaceChildren(h('p', {}, `The secret of "${done.api_key.label}" (shown once; store it now):`), h('p', { class: 'secret', id: 'new-key' }, done.secret));
      form.reset();
      await load();
    } catch (err) { error.textContent = describe(err); }
  });
  async function load() {
    const keys = (await call('GET', '/console/api/api-keys', undefined, { quiet: true })).api_keys;
    list.replaceChildren(...keys.map((k) => h('tr', {},
      h('td', {}, k.label), h('td', {}, k.role), h('td', {}, when(k.created_at)), h('td', {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : 'active'),
      h('td', {}, k.revoked_at ? null : h('button', {
        type: 'button', class: 'secondary', 'aria-label': `Revoke ${k.label}`,
        onclick: async () => {
          try { await call('POST', `/console/api/api-keys/${k.id}/revoke`); say(`${k.label} is revoked.`); await load(); } catch (err) { error.textContent = describe(err); }
        },
      }, 'Revoke')))));
  }
  main.append(h('h1', {}, 'API keys'), form, error, shown,
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Label', 'Role', 'Created', 'State', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), list)));
  try { await load(); } catch (err) { error.textContent = describe(err); }
}
