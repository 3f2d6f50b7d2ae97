// The clinician's alert for the waiting room while their tab is hidden:
// a clinician who switched to the EHR must still learn that a patient
// knocked. When someone new enters the waiting room while
// document.visibilityState is "hidden", the page plays a short tone
// (generated with WebAudio: no sound file), shows a Notification if the
// clinician allowed them, and puts the number waiting at the front of the
// tab title ("(2) waiting — Tandem"). Coming back to the tab clears the
// title. The Notification carries no name (it may show on a lock screen
// or a shared desktop), only how many are waiting.
//
// Permission is asked only from a button the clinician presses ("Notify
// me when someone is waiting"), never on page load.

import { PANEL } from './messages.js';

let alerting = false; // someone arrived since the tab was hidden
let waiting = 0;
let normalTitle = () => document.title;
let audio = null;

const hidden = () => document.visibilityState === 'hidden';
const canNotify = () => typeof Notification === 'function';

/** The tab title while the alert is on, else `normal`. */
export function waitingTitle(normal) {
  return alerting && waiting > 0 ? PANEL.alertTitle(waiting) : normal;
}

/** A short two-note chime. Best effort: a browser may refuse audio. */
function chime() {
  try {
    audio ||= new AudioContext();
    if (audio.state === 'suspended') audio.resume().catch(() => {});
    const t = audio.currentTime;
    for (const [i, hz] of [[0, 880], [1, 1320]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, t + i * 0.16);
      gain.gain.exponentialRampToValueAtTime(0.25, t + i * 0.16 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.16 + 0.15);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + i * 0.16);
      osc.stop(t + i * 0.16 + 0.16);
    }
  } catch { /* no audio: the title and the Notification still tell */ }
}

function notify(count) {
  if (!canNotify() || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(PANEL.alertNotification.title, { body: PANEL.alertNotification.body(count), tag: 'tandem-waiting', renotify: true });
    n.onclick = () => { window.focus(); n.close(); };
  } catch { /* some browsers allow Notifications only from a service worker */ }
}

/**
 * The waiting list changed: `count` wait now, `arrivals` of them are new.
 * Alerts when someone new arrived while the tab is hidden.
 */
export function onWaitingChanged(count, arrivals) {
  waiting = count;
  if (count === 0) alerting = false;
  if (!arrivals || !hidden()) return;
  alerting = true;
  chime();
  notify(count);
}

/**
 * Wires the tab's visibility (`title` gives the normal title) and the
 * button that asks for permission to notify.
 */
export function wireWaitingAlert(button, title) {
  normalTitle = title;
  document.addEventListener('visibilitychange', () => {
    if (hidden()) return;
    alerting = false;
    document.title = normalTitle();
  });
  const refresh = () => { button.hidden = !canNotify() || Notification.permission !== 'default'; };
  refresh();
  button.addEventListener('click', async () => {
    // A user gesture: the moment audio may start and permission be asked.
    try { audio ||= new AudioContext(); } catch { /* no audio */ }
    if (canNotify()) await Notification.requestPermission().catch(() => {});
    refresh();
  });
}
