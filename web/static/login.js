// The sign-in form: POST /iota/session, then back to the page asked for (or the start page).
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const data = new FormData(form);
  const answer = await fetch("/iota/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
  });
  if (answer.ok) {
    const next = sessionStorage.getItem("iota-next") ?? "";
    sessionStorage.removeItem("iota-next");
    location.assign("/iota/" + (next.startsWith("#/") ? next : ""));
    return;
  }
  const body = await answer.json().catch(() => ({}));
  error.textContent =
    answer.status === 401
      ? "Incorrect username or password"
      : answer.status === 429
        ? "Too many failed attempts; try again later"
        : (body.detail ?? `Sign-in failed (${answer.status})`);
  error.hidden = false;
});
