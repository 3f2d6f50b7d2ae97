// The waiting room screen: shown when the server says we wait (before
// admission, after a drop, or while the clinician is away), with our own
// picture and a way to leave.

import { WAITING, CONN } from './messages.js';
import { app, showScreen } from './state.js';
import { $, announce, setConn } from './ui.js';
import { leave } from './call-screen.js';

/** The screen's entry (state.js `goTo('waiting', {reason, reconnected})`). */
export function showWaiting({ reason, reconnected }) {
  clearInterval(app.statsTimer);
  setConn('ok', CONN.connected);
  const away = reason === 'clinician_away';
  const dropped = reconnected && app.wasInCall;
  const which = away ? 'away' : (dropped ? 'back' : 'first');
  $('waiting-title').textContent = WAITING.title[which];
  $('waiting-text').textContent = WAITING.text[which];
  app.wasInCall = false;
  $('waiting-preview').srcObject = app.call.videoTrack ? new MediaStream([app.call.videoTrack]) : null;
  $('waiting-preview').hidden = !app.call.videoTrack;
  showScreen('waiting', { focus: app.screen !== 'waiting' });
  if (reconnected) announce(WAITING.reconnected);
  else announce(away ? WAITING.away : WAITING.arrived);
}

export function wireWaiting() {
  $('waiting-leave').addEventListener('click', leave);
}
