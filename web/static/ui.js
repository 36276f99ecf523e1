// Messages to the operator, and running a button's action with its error shown.

/** A message above the page: kind "ok" or "error". */
export function flash(text, kind = "ok") {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

/** Runs an action; shows its error (or `done`) instead of throwing. True when it worked. */
export async function attempt(action, done) {
  try {
    await action();
    if (done) {
      flash(done);
    }
    return true;
  } catch (err) {
    flash(err.message ?? String(err), "error");
    return false;
  }
}

let rerender = async () => {};

/** The router registers how to draw the current page again. */
export function setRerender(fn) {
  rerender = fn;
}

/** Draws the current page again (after a change), keeping the message shown. */
export function reload() {
  return rerender();
}

/** True when the signed-in user may change things (the API refuses read-only users anyway). */
export function canChange(session) {
  return session.read_only !== true;
}
