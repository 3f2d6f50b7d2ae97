// What the Call (session.js) reports, turned into the page: the screen
// changes (through state.js) and the announcements. The engine knows
// nothing about the page; this is the one place that listens to it.

import { deniedMessage, CALL, CONN, END } from './messages.js';
import { app, goTo } from './state.js';
import { announce, setConn } from './ui.js';
import { renderTiles } from './call-grid.js';
import { updateOwnControls } from './call-screen.js';
import { updateLobby, renderPeople, onBreakout } from './clinician-panel.js';

export function onCallEvent(type, data) {
  const call = app.call;
  switch (type) {
    case 'waiting':
      return goTo('waiting', data);
    case 'joined':
      return goTo('call', data);
    case 'reconnecting':
      setConn('reconnecting', CONN.reconnecting);
      // Said once, and once more if it takes long: not at every attempt.
      if (data.attempt === 0) announce(CONN.lost, { sticky: true });
      else if (data.attempt === 6) announce(CONN.stillLost, { sticky: true });
      return undefined;
    case 'denied':
      return goTo('message', deniedMessage(data), data.code);
    case 'removed':
      return goTo('message', END.removed, 'removed');
    case 'ended':
      return goTo('message', END.ended, 'ended');
    case 'replaced':
      return goTo('message', END.replaced, 'replaced');
    case 'lobby':
      return updateLobby(data);
    case 'participants':
      if (data.joined) announce(CALL.joined(data.joined.name));
      if (data.left) {
        app.recentlyLeft.set(data.left.id, Date.now());
        announce(CALL.left(data.left.name));
      }
      renderTiles();
      renderPeople();
      return undefined;
    case 'remote':
      return renderTiles();
    case 'muted':
      announce(CALL.mutedByClinician(data.kind, data.allow_unmute));
      return updateOwnControls();
    case 'unmute_allowed':
      announce(CALL.unmuteAllowed(data.kind));
      return updateOwnControls();
    case 'breakout':
      return onBreakout(data);
    case 'session_ending': {
      const minutes = Math.round(data.seconds_left / 60);
      return announce(CALL.endsIn(minutes));
    }
    case 'server_error':
      if (data.code === 'not_allowed' && call.locked.audio) updateOwnControls();
      return undefined;
    default:
      return undefined;
  }
}
