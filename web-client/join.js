// The Tandem browser client's entry point (index.html loads only this):
// it gives state.js each screen's entry, wires the page's controls, reads
// the link and opens the pre-call check. One module per screen does the
// rest: precheck-screen.js, waiting-screen.js, call-screen.js (with
// call-grid.js), clinician-panel.js and end-screen.js; call-events.js turns
// what the Call (session.js) reports into the page. All the words are in
// messages.js. ES modules, no framework, no inline script or style (the
// server's CSP).

import { audioContext, missingForCalls } from './precheck.js';
import { START } from './messages.js';
import { app, defineScreens, goTo } from './state.js';
import { $ } from './ui.js';
import { showPrecheck, setupAttestation, wirePrecheck } from './precheck-screen.js';
import { showWaiting, wireWaiting } from './waiting-screen.js';
import { enterCall, wireCall } from './call-screen.js';
import { wirePanel } from './clinician-panel.js';
import { showEnd, wireEnd } from './end-screen.js';

defineScreens({
  precheck: showPrecheck,
  waiting: showWaiting,
  call: enterCall,
  message: showEnd,
});

// The token is taken out of the address bar and the history at once, so it
// is not shown, copied with the address, or left in the browser's history.
// It is kept for this tab only (sessionStorage, per join page), so that a
// reload, which some messages ask for, still has it; a link opened again
// brings its own.
const STORED = `tandem-link:${location.pathname}`;

function readToken() {
  let token = new URLSearchParams(location.hash.slice(1)).get('t');
  if (token) {
    try {
      sessionStorage.setItem(STORED, token);
    } catch {
      // Storage refused (a private mode): a reload needs the link again.
    }
    history.replaceState(history.state, '', location.pathname + location.search);
  } else {
    try {
      token = sessionStorage.getItem(STORED);
    } catch {
      token = null;
    }
  }
  if (!token) return null;
  let role = null;
  try {
    // Only to know whether to ask for the attestation: the server checks
    // the token; nothing here trusts it.
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    role = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '='))).role || null;
  } catch {
    role = null;
  }
  return { token, role };
}

function wire() {
  wirePrecheck();
  wireWaiting();
  wireCall();
  wirePanel();
  wireEnd();
  // Browsers start audio only after a gesture: a pointer or a key (a
  // keyboard-only person never sends a pointer event). Every gesture until
  // the audio runs, since one may come before anything is playing.
  const resume = () => {
    let ctx = null;
    try {
      ctx = audioContext();
    } catch {
      // No Web Audio (a browser refused at the start): nothing to resume.
    }
    for (const a of document.querySelectorAll('audio')) if (a.srcObject && a.paused) a.play().catch(() => {});
    if (!ctx || ctx.state === 'running') {
      document.removeEventListener('pointerdown', resume);
      document.removeEventListener('keydown', resume);
    }
  };
  document.addEventListener('pointerdown', resume);
  document.addEventListener('keydown', resume);
}

function start() {
  wire();
  setupAttestation();
  const link = readToken();
  if (!link) {
    $('screen-start').querySelector('h1').textContent = START.incomplete.title;
    $('status').textContent = START.incomplete.text;
    return;
  }
  // A browser that cannot make calls is told so here, before anything is
  // asked of the person, and never joins.
  const missing = missingForCalls();
  if (missing) {
    document.body.dataset.unsupported = missing;
    $('screen-start').querySelector('h1').textContent = START.unsupported.title;
    $('status').textContent = START.unsupported.text;
    $('status-why').textContent = START.lacks[missing];
    $('status-why').hidden = false;
    return;
  }
  app.token = link.token;
  app.role = link.role;
  $('status').textContent = START.complete;
  goTo('precheck');
}

start();
