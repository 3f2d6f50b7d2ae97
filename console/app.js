// The staff console: sign-in (password, then the authenticator's code),
// one-time links (set-up, the demo's sign-in), the page menu by role, and
// the automatic logoff with its warning. Pages live in their own modules.

import { call, describe, setCsrf, whenActive, whenSignedOut } from './api.js';
import { h, field, say } from './dom.js';
import { todayPage, stopLive } from './today.js';
import { attendancePage } from './attendance.js';
import { ledgerPage } from './ledger.js';
import { staffPage, keysPage } from './admin.js';
import { schedulePage } from './schedule.js';

const main = document.getElementById('main');
let me = null;
let idleTimers = [];
let signedOutReason = '';
let idleDeadline = Infinity;

const PAGES = [
  { path: 'today', title: 'Today', roles: ['admin', 'scheduler', 'clinician'], show: todayPage },
  { path: 'schedule', title: 'Schedule', roles: ['admin', 'scheduler'], show: schedulePage },
  { path: 'attendance', title: 'Attendance', roles: ['admin', 'compliance'], show: attendancePage },
  { path: 'ledger', title: 'Ledger', roles: ['admin', 'compliance'], show: ledgerPage },
  { path: 'staff', title: 'Staff', roles: ['admin'], show: staffPage },
  { path: 'api-keys', title: 'API keys', roles: ['admin'], show: keysPage },
];

function allowed(page) {
  return me && page.roles.some((r) => me.account.roles.includes(r));
}

function showPage() {
  if (!me) return;
  const path = location.hash.replace(/^#\/?/, '') || '';
  const pages = PAGES.filter(allowed);
  const page = pages.find((p) => p.path === path) || pages[0];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.path === page?.path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  stopLive();
  main.replaceChildren();
  if (!page) {
    main.append(h('h1', {}, 'No pages'), h('p', {}, 'This account has no role that uses the console.'));
    return;
  }
  document.title = `${page.title} – Tandem staff console`;
  page.show(main, me);
  main.focus();
}

function renderShell() {
  document.getElementById('bar').hidden = false;
  document.getElementById('who').textContent = `${me.account.name} (${me.account.roles.join(', ')})`;
  const nav = document.getElementById('nav');
  nav.replaceChildren(...PAGES.filter(allowed).map((p) => h('li', {}, h('a', { href: `#/${p.path}`, 'data-path': p.path }, p.title))));
}

// ------------------------------------------------------------ idle logoff

function armIdle() {
  for (const t of idleTimers) clearTimeout(t);
  idleTimers = [];
  if (!me) return;
  document.getElementById('idle-warning').hidden = true;
  const ms = me.idle_timeout_seconds * 1000;
  idleDeadline = Date.now() + ms;
  const warnMs = Math.max(0, ms - me.warn_before_seconds * 1000);
  const warnText = me.warn_before_seconds >= 60 ? 'in a minute' : `in ${Math.round(me.warn_before_seconds)} seconds`;
  idleTimers.push(setTimeout(() => {
    document.getElementById('idle-text').textContent = `You will be signed out ${warnText} because of inactivity.`;
    document.getElementById('idle-warning').hidden = false;
    document.getElementById('stay').focus();
  }, warnMs));
  idleTimers.push(setTimeout(async () => {
    // The server decides; it answers 401 once the session has ended.
    try {
      me = { ...me, ...(await call('GET', '/console/api/session', undefined, { quiet: true })) };
      armIdleFrom(new Date(me.expires_at));
    } catch {
      signedOut(`You were signed out after ${minutes(me?.idle_timeout_seconds)} without activity.`);
    }
  }, ms + 500));
}

function armIdleFrom(expires) {
  const left = expires - Date.now();
  if (left <= 0) { signedOut('Your session has ended. Please sign in again.'); return; }
  armIdle();
}

function minutes(seconds) {
  if (!seconds) return 'a while';
  if (seconds < 60) return `${Math.round(seconds)} seconds`;
  const m = Math.round(seconds / 60);
  return m === 1 ? '1 minute' : `${m} minutes`;
}

whenActive(() => { if (me) armIdle(); });

function signedOut(reason) {
  if (!me && main.querySelector('#sign-in-form')) return;
  me = null;
  setCsrf(null);
  stopLive();
  for (const t of idleTimers) clearTimeout(t);
  document.getElementById('idle-warning').hidden = true;
  document.getElementById('bar').hidden = true;
  signedOutReason = reason || 'You are signed out. Please sign in again.';
  showSignIn();
}
whenSignedOut(() => me && signedOut(Date.now() >= idleDeadline
  ? `You were signed out after ${minutes(me?.idle_timeout_seconds)} without activity.`
  : 'Your session has ended. Please sign in again.'));

document.getElementById('stay').addEventListener('click', async () => {
  try {
    me = { ...me, ...(await call('POST', '/console/api/session/keepalive')) };
    armIdle();
    say('You stay signed in.');
  } catch (e) { say(describe(e)); }
});

document.getElementById('sign-out').addEventListener('click', async () => {
  try { await call('POST', '/console/api/signout'); } catch { /* ended anyway */ }
  signedOut('You signed out.');
});

// ------------------------------------------------------------ sign-in

function showSignIn() {
  document.title = 'Sign in – Tandem staff console';
  const error = h('p', { class: 'error', role: 'alert', id: 'sign-in-error' });
  const [emailLabel, email] = field('Email', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const [passwordLabel, password] = field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { id: 'sign-in-form', class: 'narrow' }, emailLabel, email, passwordLabel, password, h('button', { type: 'submit' }, 'Sign in'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      const answer = await call('POST', '/console/api/signin', { email: email.value, password: password.value });
      if (answer.next === 'code') showCode();
      else await start();
    } catch (e) { error.textContent = describe(e); }
  });
  const reason = signedOutReason ? h('p', { class: 'notice', role: 'status' }, signedOutReason) : null;
  main.replaceChildren(...[h('p', { class: 'brand-line' }, 'Tandem staff console'), h('h1', {}, 'Sign in'), reason, form].filter(Boolean));
  email.focus();
}

function showCode() {
  const error = h('p', { class: 'error', role: 'alert' });
  const [label, code] = field('Authentication code', { inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]*', required: true });
  const form = h('form', { id: 'code-form', class: 'narrow' },
    h('p', {}, 'Enter the 6-digit code from your authenticator app.'),
    label, code, h('button', { type: 'submit' }, 'Verify'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      await call('POST', '/console/api/signin/code', { code: code.value });
      await start();
    } catch (e) {
      error.textContent = describe(e);
      if (e.code === 'locked_out' || e.code === 'signed_out') {
        signedOutReason = describe(e);
        showSignIn();
      }
    }
  });
  main.replaceChildren(h('p', { class: 'brand-line' }, 'Tandem staff console'), h('h1', {}, 'Sign in'), form);
  code.focus();
}

function showSetUp(token) {
  document.title = 'Set up your account – Tandem staff console';
  const error = h('p', { class: 'error', role: 'alert' });
  const [label, password] = field('New password', { type: 'password', autocomplete: 'new-password', minlength: 12, required: true });
  const form = h('form', { class: 'narrow' },
    h('p', {}, 'Choose a password of at least 12 characters.'),
    label, password, h('button', { type: 'submit' }, 'Set password'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      const done = await call('POST', '/console/api/setup', { token, password: password.value });
      history.replaceState(null, '', '/console/');
      const parts = [h('h1', {}, 'Account ready'), h('p', {}, `Your account ${done.email} has a password now.`)];
      if (done.totp_secret) {
        parts.push(
          h('h2', {}, 'Your authenticator app'),
          h('p', {}, 'Add this key to your authenticator app (shown once). The console asks for its 6-digit code at every sign-in.'),
          h('p', { class: 'secret', id: 'totp-secret' }, done.totp_secret),
          h('p', {}, h('a', { href: done.otpauth_url }, 'Open in an authenticator app')),
        );
      }
      parts.push(h('button', { type: 'button', onclick: () => { signedOutReason = ''; showSignIn(); } }, 'Go to sign in'));
      main.replaceChildren(...parts);
    } catch (e) { error.textContent = describe(e); }
  });
  main.replaceChildren(h('h1', {}, 'Set up your account'), form);
  password.focus();
}

async function start() {
  me = await call('GET', '/console/api/session', undefined, { quiet: true });
  setCsrf(me.csrf_token);
  signedOutReason = '';
  renderShell();
  armIdle();
  showPage();
}

async function boot() {
  const hash = location.hash;
  let m;
  if ((m = hash.match(/^#setup=([A-Za-z0-9_-]+)/))) {
    showSetUp(m[1]);
    return;
  }
  if ((m = hash.match(/^#signin=([A-Za-z0-9_-]+)/))) {
    history.replaceState(null, '', '/console/');
    try {
      await call('POST', '/console/api/signin/link', { token: m[1] });
    } catch (e) {
      signedOutReason = describe(e);
      showSignIn();
      return;
    }
  }
  try { await start(); } catch { showSignIn(); }
}

window.addEventListener('hashchange', () => {
  if (/^#(setup|signin)=/.test(location.hash)) { boot(); return; }
  showPage();
});
boot();
