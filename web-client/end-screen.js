// The end screen: a denied link, removal, the end of the session, another
// device taking over, or leaving. It stops the call and the camera, says
// what happened, and offers the next step (try again, rejoin…); a link
// that is only a little early joins by itself when it opens.

import { END } from './messages.js';
import { app, goTo, showScreen } from './state.js';
import { $, announce, setConn } from './ui.js';
import { join } from './precheck-screen.js';

function stopLocalMedia() {
  app.stopMeter();
  app.stopMeter = () => {};
  for (const track of app.stream ? app.stream.getTracks() : []) track.stop();
  if (app.call) {
    for (const t of [app.call.audioTrack, app.call.videoTrack, app.call.screenTrack]) if (t) t.stop();
  }
  app.stream = null;
  for (const v of document.querySelectorAll('video')) v.srcObject = null;
}

/**
 * The screen's entry (state.js `goTo('message', message, code)`): `message`
 * is `{title, text, hint, action, tone, opensAt}` (messages.js), `code`
 * what ended it (a denial code, 'removed', 'left'…), kept on the body.
 */
export function showEnd(message, code) {
  clearInterval(app.statsTimer);
  clearInterval(app.clockTimer);
  if (app.call) app.call.finish();
  stopLocalMedia();
  for (const t of app.tiles.values()) t.audio?.remove();
  app.tiles.clear();
  $('grid').replaceChildren();
  setConn(null);
  $('message-title').textContent = message.title;
  $('message-text').textContent = message.text;
  $('message-hint').textContent = message.hint || '';
  $('message-mark').dataset.tone = message.tone || 'info';
  const action = $('message-action');
  action.hidden = !message.action;
  action.textContent = END.actions[message.action] || '';
  document.body.dataset.end = code || '';
  clearTimeout(app.autoJoin);
  if (code === 'not_yet_open' && message.opensAt) {
    // Soon: keep the page open and join by ourselves when the link opens.
    const wait = Date.parse(message.opensAt) - Date.now();
    if (wait > 0 && wait < 30 * 60000) {
      $('message-hint').textContent = END.autoJoin(message.opensAt);
      app.autoJoin = setTimeout(async () => {
        app.call = null;
        await goTo('precheck');
        join();
      }, wait + 1500);
    }
  }
  showScreen('message');
  announce(END.announce(message), { sticky: true });
}

export function wireEnd() {
  $('message-action').addEventListener('click', () => {
    clearTimeout(app.autoJoin);
    app.call = null;
    app.tiles.clear();
    app.lobby = [];
    goTo('precheck');
  });
}
