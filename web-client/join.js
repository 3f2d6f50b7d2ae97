// Reads the invite from the URL fragment (never sent to the server) and says
// whether it is present. The full client replaces this page.
const status = document.getElementById("status");
const token = new URLSearchParams(location.hash.slice(1)).get("t");
status.textContent = token
  ? "Your personal link is complete."
  : "This link is incomplete. Please open the full link your clinic sent you.";
