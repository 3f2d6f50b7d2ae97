// Calls to the server with the console's cookie session: the CSRF token
// goes with every request that changes something; a 401 means the session
// ended, and the page goes back to "Sign in".

let csrf = null;
let onSignedOut = () => {};
let onActivity = () => {};

export function setCsrf(token) { csrf = token; }
export function whenSignedOut(fn) { onSignedOut = fn; }
export function whenActive(fn) { onActivity = fn; }

/** An error with the server's sentence. */
export class ApiError extends Error {
  constructor(status, code, message, details, conflicts) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.conflicts = conflicts;
  }
}

/** Sends a request; resolves with the parsed JSON (or null), throws ApiError. */
export async function call(method, url, body, { raw = false, quiet = false } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
  }
  if (!quiet) onActivity();
  if (!response.ok) {
    let code = 'error';
    let message = `The server answered ${response.status}.`;
    let details;
    let conflicts;
    try {
      const json = await response.json();
      code = json.error?.code || code;
      message = json.error?.message || message;
      details = json.error?.details;
      conflicts = json.error?.conflicts;
    } catch { /* not JSON */ }
    if (response.status === 401 && code === 'signed_out') onSignedOut();
    throw new ApiError(response.status, code, message, details, conflicts);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** A sentence for an error, with the fields named when the server gave them. */
export function describe(error) {
  if (error?.details?.length) {
    return `${error.message} ${error.details.map((d) => `${d.field}: ${d.message}`).join('; ')}`;
  }
  return error?.message || String(error);
}
