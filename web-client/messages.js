// Every word the join page shows or announces, in one place: labels and
// button texts set from script, status announcements (the aria-live
// region), dialogs, and what we tell people when they cannot be in the
// session, in plain words. Text that never changes stays in index.html.
// Every `denied` code of docs/protocol.md has an entry; unknown codes fall
// back to the server's own sentence.

export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const day = date.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
  const time = date.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit', timeZoneName: 'short' });
  return `${day} at ${time}`;
}

export function clockTime(iso) {
  const date = new Date(iso);
  return date.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
}

const CONTACT = 'If you need help, contact your clinic.';

/**
 * `{title, text, hint, action, tone}`: action is 'retry' (try the same link
 * again), 'knock' (ask to be let in again) or null.
 */
export function deniedMessage(m) {
  switch (m.code) {
    case 'token_invalid':
      return { tone: 'warn', title: "This link doesn't work", text: 'Please open the exact link your clinic sent you. If you copied it, some of it may be missing.', hint: CONTACT };
    case 'token_expired':
      return { tone: 'warn', title: 'This link has expired', text: 'The time for this session has passed. Please ask your clinic for a new link.', hint: '' };
    case 'not_yet_open':
      return {
        tone: 'info',
        title: "It's a little early",
        text: m.opens_at ? `You can join from ${localTime(m.opens_at)}.` : 'This session is not open yet.',
        hint: 'Come back to this link then, or keep this page open and try again.',
        action: 'retry',
        opensAt: m.opens_at,
      };
    case 'e2ee_required':
      return { tone: 'stop', title: "This browser can't join this session", text: 'This session is end-to-end encrypted, and this browser cannot encrypt the call.', hint: 'Please open your link in a current Chrome, Edge, Firefox or Safari.' };
    case 'not_on_roster':
      return { tone: 'warn', title: "You're not on the list for this session", text: 'This link is not set up for this session.', hint: CONTACT };
    case 'revoked':
      return { tone: 'warn', title: 'This link is no longer active', text: 'Your clinic has withdrawn this link.', hint: CONTACT };
    case 'removed':
      return { tone: 'stop', title: "You can't rejoin this session", text: 'Your clinician removed you from this session.', hint: CONTACT };
    case 'denied_by_clinician':
      return { tone: 'info', title: "Your clinician didn't let you in", text: 'Your clinician could not admit you just now.', hint: 'You can ask to join again.', action: 'knock' };
    case 'session_cancelled':
      return { tone: 'info', title: 'This session was cancelled', text: 'This session is not taking place.', hint: CONTACT };
    case 'session_ended':
      return { tone: 'info', title: 'This session has ended', text: 'Thank you for joining. You can close this page.', hint: '' };
    case 'rate_limited':
      return { tone: 'warn', title: 'Too many attempts', text: 'Please wait a minute, then try again.', hint: '', action: 'retry' };
    case 'join_required':
      return { tone: 'warn', title: "We couldn't connect you", text: 'Something went wrong while joining.', hint: 'Please try again.', action: 'retry' };
    default:
      return { tone: 'warn', title: "We couldn't connect you", text: m.message || 'Something went wrong.', hint: CONTACT, action: 'retry' };
  }
}

/** The end screen for the ends that are not a denial: `{title, text, hint, action, tone}`. */
export const END = {
  removed: { tone: 'stop', title: "You've been removed from the session", text: 'Your clinician removed you from this session, so you cannot rejoin it.', hint: CONTACT },
  ended: { tone: 'done', title: 'The session has ended', text: 'Thank you for joining. You can close this page.', hint: '' },
  replaced: { tone: 'info', title: 'This session is open somewhere else', text: 'You joined from another tab or device, so this page has stopped.', hint: '', action: 'here' },
  left: { tone: 'done', title: "You've left the session", text: 'You can close this page, or rejoin if you left by mistake.', hint: '', action: 'rejoin' },
  /** The end screen's button, by `action`. */
  actions: { retry: 'Try again', knock: 'Ask to join again', rejoin: 'Rejoin', here: 'Use this page instead' },
  autoJoin: (at) => `Keep this page open: we'll connect you automatically at ${clockTime(at)}.`,
  announce: (m) => `${m.title}. ${m.text}`,
};

/** The first screen, while the link is read. */
export const START = {
  incomplete: { title: 'This link is incomplete', text: 'Please open the full link your clinic sent you. Everything after the # is needed.' },
  unsupported: {
    title: "This browser can't join video sessions",
    text: 'Please open your link in a current version of Chrome, Edge or Firefox on a computer or Android device, or in Safari on an iPhone, iPad or Mac.',
  },
  /** Why (shown under the text): what the browser lacks, in plain words. */
  lacks: {
    insecure: 'This page was not opened over a secure connection.',
    webrtc: 'This browser has no video calling (WebRTC), or it is turned off.',
    camera: 'This browser cannot use a camera or microphone on web pages.',
    codecs: 'This browser cannot send or play the sound and video formats the session uses.',
  },
  complete: 'Your personal link is complete.',
};

/** The device pickers: an option for a device without a label, or none. */
export const DEVICES = {
  camera: { unnamed: (n) => `Camera ${n}`, none: 'No camera found' },
  mic: { unnamed: (n) => `Microphone ${n}`, none: 'No microphone found' },
  speaker: { unnamed: (n) => `Speaker ${n}`, none: 'No speaker found', default: 'Your device’s default speaker' },
};

export const PRECHECK = {
  allowPrompt: 'If your browser asks, choose Allow to use your camera and microphone.',
  noPicture: 'No camera picture',
  hearYou: 'We can hear you.',
  answerFirst: 'Please answer the questions before joining.',
  join: 'Join session',
  joining: 'Joining…',
  connecting: 'Connecting…',
};

/** Why the camera or microphone did not start (a getUserMedia error). */
export function explainMediaError(e) {
  if (!e) return '';
  switch (e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Your browser is blocking the camera and microphone. Allow them for this site (the icon next to the address), then reload this page.';
    case 'NotFoundError':
      return "We couldn't find a camera or microphone on this device. Check that one is connected and turned on. You can still join.";
    case 'OverconstrainedError':
      return 'The camera or microphone you chose is no longer available. Choose another one.';
    case 'NotReadableError':
    case 'AbortError':
      return 'Your camera or microphone is in use by another app, such as another video call. Close that app, then try again.';
    default:
      return "We couldn't start your camera or microphone. You can still join.";
  }
}

/** The connection test's verdicts: `{text, detail}`. */
export const CONNECTION = {
  checking: 'Checking your connection…',
  unreachable: { text: "We can't reach the server", detail: 'Check that you are online, then test again. If it keeps happening, call your clinic.' },
  noVideo: { text: 'Your connection may not support video', detail: 'Your browser could not prepare a video connection. Try another network or browser if the call does not start.' },
  slow: (ms) => ({ text: 'Your connection may be slow', detail: `The server answered in ${ms} ms. Video may be choppy; moving closer to your Wi-Fi can help.` }),
  good: (ms) => ({ text: 'Your connection looks good', detail: `The server answered in ${ms} ms.` }),
};

/** The connection badge in the top bar, and what is said when it drops. */
export const CONN = {
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  lost: 'Connection lost. Reconnecting…',
  stillLost: 'Still trying to reconnect. Please check your internet connection.',
};

export const WAITING = {
  title: { first: "You're in the waiting room", back: "You're back in the waiting room", away: 'Your clinician will be back' },
  text: {
    first: 'Your clinician will let you in.',
    back: 'Your connection dropped for a moment. Your clinician will let you back in.',
    away: "Your clinician's connection dropped. Your clinician will let you in again.",
  },
  reconnected: 'Reconnected. You are in the waiting room.',
  away: "Your clinician's connection dropped. Please wait.",
  arrived: 'You are in the waiting room. Your clinician will let you in.',
};

const device = (kind) => (kind === 'audio' ? 'microphone' : 'camera');

/** The call: announcements, the tiles, and our own controls. */
export const CALL = {
  pageTitle: (title) => `${title} – Tandem`,
  reconnected: 'Reconnected.',
  joinedWith: (names) => (names.length ? `You joined the session with ${names.join(' and ')}.` : 'You joined the session.'),
  joined: (name) => `${name} joined.`,
  left: (name) => `${name} left.`,
  mutedByClinician: (kind, allowUnmute) => (allowUnmute === false
    ? `Your clinician turned off your ${device(kind)}. You can turn it back on when they allow it.`
    : `Your clinician turned off your ${device(kind)}. You can turn it back on.`),
  unmuteAllowed: (kind) => `You can turn your ${device(kind)} back on.`,
  endsIn: (minutes) => (minutes >= 2 ? `The session ends in ${minutes} minutes.` : 'The session ends in about a minute.'),
  alone: { clinician: 'No one else is here yet. People who arrive wait in the waiting room until you admit them.', other: 'Waiting for others to join.' },
  // Tiles
  you: 'You',
  youNamed: (name) => `You (${name})`,
  screenOf: (name) => `${name}'s screen`,
  screen: 'Screen',
  yourScreen: 'Your shared screen',
  badges: { speaking: 'Speaking', micOff: 'Microphone off', cameraOff: 'Camera off', hand: 'Hand raised' },
  // Raise hand (names are a contract), the group grid, breakouts as a couple sees them.
  raiseHand: 'Raise hand',
  lowerHand: 'Lower hand',
  handRaised: (name) => `${name} raised their hand.`,
  youRaised: 'You raised your hand. The clinician will see it.',
  youLowered: 'Your hand is lowered.',
  yourHousehold: 'Your household',
  coupleMark: (h) => `Couple ${h}`,
  spotlightOn: (name) => `${name} is in the spotlight.`,
  spotlightOff: 'The spotlight is off.',
  page: (n, of) => `People ${n} of ${of}`,
  prevPage: 'Previous people',
  nextPage: 'Next people',
  inBreakout: (withClinician) => `You and your partner are in a private breakout${withClinician ? ' with your clinician' : ''}.`,
  backIn: (left) => `Back to the group in ${left}.`,
  breakoutOneMinute: 'One minute left in your breakout. You will return to the group by yourselves.',
  backInGroup: 'Your breakout has ended. You are back with the group.',
  messageFrom: (from, text) => `Message from ${from}: ${text}`,
  sharing: (name) => `${name} is sharing their screen.`,
  sharingStopped: 'Screen sharing stopped.',
  // Our own controls
  mute: 'Mute',
  unmute: 'Unmute',
  cameraOff: 'Turn camera off',
  cameraOn: 'Turn camera on',
  share: 'Share screen',
  stopShare: 'Stop sharing',
  lockedMic: 'Your clinician has muted you. You can unmute when they allow it.',
  lockedCamera: 'Your clinician has turned off your camera for now.',
  micIsOn: 'Your microphone is on.',
  micIsOff: 'You are muted.',
  camIsOff: 'Your camera is off.',
  camIsOn: 'Your camera is on.',
  shareStarted: 'You are sharing your screen with everyone.',
  shareStopped: 'You stopped sharing your screen.',
  shareFailed: 'Screen sharing did not start.',
  // Devices during the call
  devices: 'Devices',
  hideDevices: 'Hide devices',
  pickCamera: 'Camera',
  pickMic: 'Microphone',
  pickSpeaker: 'Speaker',
  cameraSwitched: (name) => `Now using ${name}.`,
  micSwitched: (name) => `Now using ${name}.`,
  speakerSwitched: (name) => `Sound now plays on ${name}.`,
  // Something went wrong with the call's connection (not the network)
  trouble: "Something went wrong with the call's connection. If you can't see or hear the others, leave and rejoin.",
};

/**
 * The end screens for a call that cannot work here: the network never lets
 * media through (ICE failed again and again after admission), or the
 * browser could not set up a call at all.
 */
/** End-to-end encryption's indicator and safety code on the call screen. */
export const E2EE = {
  on: 'End-to-end encrypted',
  transit: 'Encrypted in transit',
  onHint: 'Only the people in this session can see and hear it.',
  transitHint: 'Protected on the network; the clinic\'s server handles the audio and video.',
  code: (code) => `Safety code ${code}`,
};

export const CANNOT_CONNECT = {
  blocked: {
    tone: 'warn',
    title: 'Your network is blocking the video call',
    text: 'You were let into the session, but your video and sound could not get through, twice. Networks at work, school, hotels and on public Wi-Fi often block video calls.',
    hint: "Try another network, such as your home Wi-Fi or your phone's mobile data, then choose Try again. If it keeps happening, contact your clinic.",
    action: 'retry',
  },
  broken: {
    tone: 'warn',
    title: "This browser couldn't start the video call",
    text: 'You were let into the session, but this browser could not set up the video and sound, so you have left it again.',
    hint: 'Please open your link in a current version of Chrome, Edge or Firefox, or in Safari on an iPhone, iPad or Mac.',
    action: 'retry',
  },
};

/** The clinician's panel: waiting list, people, quality, timer, breakouts. */
export const PANEL = {
  pageTitle: (waiting, title) => `${waiting ? `(${waiting} waiting) ` : ''}${title || 'Tandem'} – Tandem`,
  // The alert while the clinician's tab is hidden (waiting-alert.js)
  alertTitle: (waiting) => `(${waiting}) waiting — Tandem`,
  alertNotification: {
    title: 'Someone is waiting to join',
    body: (waiting) => (waiting === 1 ? '1 person is in your waiting room.' : `${waiting} people are in your waiting room.`),
  },
  // The session
  endConfirm: { title: 'End the session for everyone?', text: 'Everyone will be disconnected and no one can rejoin this session.', ok: 'End session' },
  untilStart: (at) => `until the scheduled start (${clockTime(at)})`,
  elapsed: (endsAt, minutesLeft) => (minutesLeft > 0
    ? `elapsed · ends ${clockTime(endsAt)} (${minutesLeft} min left)`
    : `elapsed · due to end ${clockTime(endsAt)}`),
  // The waiting room
  waiting: (names) => `${names.join(' and ')} ${names.length > 1 ? 'are' : 'is'} waiting to join.`,
  admit: 'Admit',
  deny: 'Deny',
  admitting: (name) => `Admitting ${name}.`,
  admittingAll: 'Admitting everyone who is waiting.',
  waitingSince: (since) => `Waiting since ${clockTime(since)}`,
  backSince: (since) => `Was in the session · back at ${clockTime(since)}`,
  denyConfirm: (name) => ({ title: `Deny ${name}?`, text: 'They will see that you did not let them in. They can ask to join again.', ok: 'Deny' }),
  denied: (name) => `${name} was not let in.`,
  // The people in the session
  mute: 'Mute',
  allowUnmute: 'Allow unmute',
  remove: 'Remove',
  removeConfirm: (name) => ({ title: `Remove ${name}?`, text: 'They will leave the session at once and cannot rejoin it, with any link.', ok: 'Remove' }),
  removed: (name) => `${name} was removed from the session.`,
  muted: (name) => `You muted ${name}.`,
  mayUnmute: (name) => `${name} can unmute again.`,
  mediaState: (audio, video) => [audio ? 'Mic on' : 'Mic off', video ? 'Camera on' : 'Camera off'].join(' · '),
  // Connection quality (what arrives from them)
  measuring: 'Measuring connection…',
  noMedia: 'No media yet',
  notConnected: 'Not connected: no sound or video has arrived from them',
  couldNotConnect: (name) => `${name} left: their sound and video could not connect. Their network or browser may block video calls.`,
  bitrate: (kbps) => (kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbps` : `${Math.round(kbps)} kbps`),
  audioOnly: (rate) => `Audio only · ${rate}`,
  grades: { good: 'Good', fair: 'Fair', poor: 'Poor' },
  quality: (grade, rate, lossPct) => `${grade} · ${rate} · ${lossPct.toFixed(1)}% loss`,
  // Breakouts
  household: (h) => `Household ${h}`,
  inBreakout: (b) => `Couple ${b.household} is in a private breakout${b.with_clinician ? ' with you' : ''}.`,
  breakoutStarted: (h) => `Couple ${h} is now in a private breakout.`,
  breakoutEnded: (h) => `Couple ${h} is back in the group.`,
  withYou: 'With you',
  onTheirOwn: 'On their own',
  endBreakout: 'End breakout',
  // Couples, breakouts with a timer (issue 21); the button names are a contract.
  couple: (h) => `Couple ${h}`,
  others: 'Others',
  breakout: 'Breakout',
  bringBack: 'Bring everyone back',
  messageBreakouts: 'Message to breakouts',
  inMainRoom: 'In the group',
  inBreakoutFor: (b, left) => `In a breakout${b.with_clinician ? ' with you' : ''}${left != null ? ` · ${left} left` : ''}`,
  speakingIn: (names) => `Speaking: ${names.join(', ')}`,
  quietIn: 'No one is speaking',
  breakoutEndingSoon: (h) => `The breakout of couple ${h} ends in a minute.`,
  messageSent: 'Your message was shown in every breakout.',
  noBreakouts: 'No couple is in a breakout.',
  // Pin (for me) and Spotlight (for everyone); the names are a contract.
  pin: 'Pin',
  spotlight: 'Spotlight',
  pinned: (name) => `${name} is pinned for you.`,
  unpinned: (name) => `${name} is no longer pinned.`,
  spotlighted: (name) => `Everyone now sees ${name} large.`,
  spotlightOff: 'The spotlight is off.',
  // Raised hands
  lowerHand: 'Lower hand',
  handsEmpty: 'No hands raised.',
  handSince: (since) => `Raised at ${clockTime(since)}`,
  handLowered: (name) => `You lowered ${name}'s hand.`,
};

export const ROLE_NAMES = {
  clinician: 'Clinician',
  patient: 'Patient',
  partner: 'Partner',
  observer: 'Observer',
};

export function roleName(role) {
  return ROLE_NAMES[role] || role;
}

export const STATES = [
  ['AL', 'Alabama'], ['AK', 'Alaska'], ['AZ', 'Arizona'], ['AR', 'Arkansas'], ['CA', 'California'],
  ['CO', 'Colorado'], ['CT', 'Connecticut'], ['DE', 'Delaware'], ['DC', 'District of Columbia'],
  ['FL', 'Florida'], ['GA', 'Georgia'], ['HI', 'Hawaii'], ['ID', 'Idaho'], ['IL', 'Illinois'],
  ['IN', 'Indiana'], ['IA', 'Iowa'], ['KS', 'Kansas'], ['KY', 'Kentucky'], ['LA', 'Louisiana'],
  ['ME', 'Maine'], ['MD', 'Maryland'], ['MA', 'Massachusetts'], ['MI', 'Michigan'], ['MN', 'Minnesota'],
  ['MS', 'Mississippi'], ['MO', 'Missouri'], ['MT', 'Montana'], ['NE', 'Nebraska'], ['NV', 'Nevada'],
  ['NH', 'New Hampshire'], ['NJ', 'New Jersey'], ['NM', 'New Mexico'], ['NY', 'New York'],
  ['NC', 'North Carolina'], ['ND', 'North Dakota'], ['OH', 'Ohio'], ['OK', 'Oklahoma'], ['OR', 'Oregon'],
  ['PA', 'Pennsylvania'], ['RI', 'Rhode Island'], ['SC', 'South Carolina'], ['SD', 'South Dakota'],
  ['TN', 'Tennessee'], ['TX', 'Texas'], ['UT', 'Utah'], ['VT', 'Vermont'], ['VA', 'Virginia'],
  ['WA', 'Washington'], ['WV', 'West Virginia'], ['WI', 'Wisconsin'], ['WY', 'Wyoming'],
  ['PR', 'Puerto Rico'], ['OUTSIDE_US', 'Outside the United States'],
];
