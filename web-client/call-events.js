// What the Call (session.js) reports, turned into the page: the screen
// changes (through state.js) and the announcements. The engine knows
// nothing about the page; this is the one place that listens to it.

import { deniedMessage, CALL, CANNOT_CONNECT, CONN, END, PANEL } from './messages.js';
import { app, goTo } from './state.js';
import { announce, setConn } from './ui.js';
import { renderTiles } from './call-grid.js';
import { renderE2ee, updateOwnControls, onOwnBreakout, onBreakoutEnding as ownBreakoutEnding, onBreakoutMessage } from './call-screen.js';
import { updateLobby, renderPeople, renderHands, onBreakout, onBreakoutEnding, onSpeaking } from './clinician-panel.js';

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
    case 'blocked':
    case 'broken':
      return goTo('message', CANNOT_CONNECT[type], type);
    case 'trouble':
      return announce(CALL.trouble, { sticky: true });
    case 'lobby':
      return updateLobby(data);
    case 'e2ee':
      return renderE2ee(data);
    case 'participants':
      if (data.joined) {
        app.inRoomSince.set(data.joined.id, Date.now());
        app.heardFrom.delete(data.joined.id);
        announce(CALL.joined(data.joined.name));
      }
      if (data.left) {
        const id = data.left.id;
        app.recentlyLeft.set(id, Date.now());
        // The clinician hears why someone who never got through left.
        const sends = data.left.audio || data.left.video;
        const neverConnected = call.me?.role === 'clinician' && sends && app.inRoomSince.has(id) && !app.heardFrom.has(id);
        app.inRoomSince.delete(id);
        announce(neverConnected ? PANEL.couldNotConnect(data.left.name) : CALL.left(data.left.name), { sticky: neverConnected });
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
      return call.me?.role === 'clinician' ? onBreakout(data) : onOwnBreakout(data);
    case 'breakout_ending':
      return call.me?.role === 'clinician' ? onBreakoutEnding(data) : ownBreakoutEnding(data);
    case 'breakout_message':
      return call.me?.role === 'clinician' ? undefined : onBreakoutMessage(data);
    case 'speaking':
      return onSpeaking(data);
    case 'hands':
      return onHands(data);
    case 'spotlight': {
      const p = data && call.participants.get(data);
      if (data === call.me?.id) announce(CALL.spotlightOn(CALL.you));
      else announce(p ? CALL.spotlightOn(p.name) : CALL.spotlightOff);
      renderTiles();
      return renderPeople();
    }
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

/** The raised hands changed: each new one is announced (aria-live), oldest first. */
function onHands(raised) {
  const call = app.call;
  const before = new Set(app.handsSeen);
  app.handsSeen = raised.map((h) => h.id);
  const names = raised
    .filter((h) => !before.has(h.id) && h.id !== call.me?.id)
    .map((h) => call.participants.get(h.id)?.name)
    .filter(Boolean);
  if (names.length) announce(names.map(CALL.handRaised).join(' '));
  renderHands();
  updateOwnControls();
}
