// What we tell people when they cannot be in the session, in plain words.
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

export const ROLE_NAMES = {
  clinician: 'Clinician',
  patient: 'Patient',
  partner: 'Partner',
  observer: 'Observer',
};

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
