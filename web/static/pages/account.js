// Change password (IoTa's /account): at least 8 characters, typed twice.
import { call, session } from "../api.js";
import { h } from "../dom.js";
import { attempt, flash } from "../ui.js";

export function accountPage() {
  const password = h("input", {
    type: "password",
    id: "new-password",
    autocomplete: "new-password",
  });
  const confirm = h("input", {
    type: "password",
    id: "confirm-password",
    autocomplete: "new-password",
  });
  const form = h(
    "form",
    { class: "card" },
    h("label", {}, "New password ", password),
    h("label", {}, "Confirm password ", confirm),
    h("button", { type: "submit", id: "change-password" }, "Change password"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (password.value.length < 8) {
      flash("The password must have at least 8 characters", "error");
      return;
    }
    if (password.value !== confirm.value) {
      flash("The passwords do not match", "error");
      return;
    }
    void attempt(async () => {
      const answer = await call("POST", "/session/password", { password: password.value });
      session.csrf = answer.csrf;
      form.reset();
    }, "Password changed; your other sessions were signed out");
  });
  return [h("h1", {}, `Account: ${session.username}`), form];
}
