// Small DOM helpers every screen uses: element lookup and creation, the
// status line (the aria-live region), the connection badge and the
// confirmation dialog. No text of their own: callers pass it in.

export const $ = (id) => document.getElementById(id);

export const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('aria-') || k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c != null));
  return node;
};

// The status line's own timer (when it fades), not app state.
let liveTimer = null;
/** Shows a status line and announces it (the aria-live region). */
export function announce(text, { sticky = false } = {}) {
  const live = $('live');
  live.textContent = '';
  live.classList.add('show');
  // A fresh text node after a tick: repeated messages are read again.
  setTimeout(() => { live.textContent = text; }, 30);
  clearTimeout(liveTimer);
  if (!sticky) liveTimer = setTimeout(() => live.classList.remove('show'), 7000);
}

export function setConn(state, text) {
  const conn = $('conn');
  conn.hidden = !state;
  conn.dataset.state = state || '';
  conn.textContent = text || '';
}

export function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
}

/** A confirmation dialog; resolves to true when confirmed. */
export function confirmAction({ title, text, ok }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const done = (value) => {
      $('confirm-ok').onclick = null;
      $('confirm-cancel').onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(value);
    };
    $('confirm-ok').onclick = () => done(true);
    $('confirm-cancel').onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}
