// The one app state of the join page: what it knows (`app`), which screen
// it shows, and the ways from one screen to the next. The screen modules
// keep nothing of their own between calls; they read and write `app`, and
// they change screen only through `goTo`, so the page's flow is declared
// here, once.

/**
 * The screens (`<section id="screen-NAME">` in index.html) and which ones
 * may follow each. `start` is the page as loaded.
 */
export const TRANSITIONS = {
  // The link is complete: the pre-call check.
  start: ['precheck'],
  // Joined: the waiting room, the call, or a denial.
  precheck: ['waiting', 'call', 'message'],
  // Told again (a reconnect), admitted, left, removed, ended.
  waiting: ['waiting', 'call', 'message'],
  // A reconnect, back to the waiting room (dropped, clinician away), the end
  // (also a call that cannot connect here: blocked, broken).
  call: ['call', 'waiting', 'message'],
  // Another end (one already on its way when the person left); try again,
  // rejoin, or by itself when a link that was too early opens.
  message: ['message', 'precheck'],
};

export const app = {
  /** @type {keyof typeof TRANSITIONS} the screen shown */
  screen: 'start',

  // ---- the link (read from the fragment; the server checks the token)
  token: null,
  role: null, // only to know whether to ask for the attestation

  // ---- the pre-call check
  stream: null, // the pre-call stream (its tracks go into the call)
  cameraId: '',
  micId: '',
  speakerId: '',
  cameraWanted: true,
  stopMeter: () => {}, // stops the level meter that runs (pre-call or in the call)
  attestation: null, // what a patient or partner said before joining

  // ---- the call
  call: null, // the Call of session.js, from Join until the end screen
  localLevel: 0, // our microphone level, 0..1 (the "Speaking" badge)
  tiles: new Map(), // tile key ('self', participant id, 'ID:screen:MID') -> tile
  wasInCall: false, // a drop back to the waiting room says "back"
  joinedAt: null,
  statsTimer: null,
  quality: new Map(), // participant id -> getStats figures, from the last poll
  inRoomSince: new Map(), // participant id -> when we saw them come into the room
  heardFrom: new Set(), // participant ids whose sound or video has reached us
  pinned: null, // the participant id we pinned for ourselves (shown large)
  activeSpeaker: null, // { id, at }: the loudest voice lately, from getStats audio levels
  page: 0, // the page of tiles shown where they do not all fit (360 px)
  handsSeen: [], // participant ids whose raised hand was announced
  ownBreakout: null, // the breakout our household is in, as the server said

  // ---- the clinician panel
  lobby: [], // who waits, as the server last said
  lockedByMe: new Set(), // muted without self-unmute: they get "Allow unmute"
  recentlyLeft: new Map(), // participant id -> when they left ("Was in the session")
  breakouts: new Map(), // household -> the active breakout
  breakoutSpeaking: new Set(), // participant ids speaking in a breakout we are not in
  rowKeys: new Map(), // row id -> a short number for element ids
  clockTimer: null,

  // ---- the end screen
  autoJoin: null, // joins by itself when a link that was too early opens
};

// Each screen's entry, given by join.js (screen modules cannot import one
// another's without a cycle).
const enter = {};

export function defineScreens(entries) {
  Object.assign(enter, entries);
}

/**
 * Goes to a screen through its entry, which shows it (`showScreen`). A
 * change the table does not declare is a bug: it is logged, and still
 * made, so that the table can never leave someone on the wrong screen.
 */
export function goTo(name, ...args) {
  if (!TRANSITIONS[app.screen]?.includes(name)) {
    console.warn(`state.js: ${app.screen} -> ${name} is not a declared transition`);
  }
  return enter[name](...args);
}

/** Shows one screen, hides the others, and moves focus to its heading. */
export function showScreen(name, { focus = true } = {}) {
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== `screen-${name}`;
  app.screen = name;
  document.body.dataset.screen = name;
  if (focus) {
    const h = document.querySelector(`#screen-${name} h1`);
    if (h) h.focus({ preventScroll: true });
  }
}
