import { ApiError, signIn } from "../api";
import { el, show } from "../dom";
import type { Stop } from "../main";

/** Sign-in with an API key, checked against the coordinator, then kept for this browser session only. */
export function signInPage(done: () => Promise<void>): Stop {
  const input = el("input", { type: "password", id: "api-key", name: "api-key", placeholder: "rf_c_…", autocomplete: "off", required: true });
  const message = el("p", { className: "error", role: "alert" });
  const form = el("form", { className: "signin" },
    el("h1", {}, "Sign in"),
    el("label", { htmlFor: "api-key" }, "API key"),
    input,
    el("button", { type: "submit" }, "Sign in"),
    message,
    el("p", { className: "muted" }, "The key stays in this tab's session storage and is sent only to this coordinator, in the x-api-key header."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      await signIn(input.value.trim());
      await done();
    } catch (e) {
      message.textContent = e instanceof ApiError && e.status === 401 ? `Not accepted: ${e.message}` : String(e instanceof Error ? e.message : e);
    }
  });
  show(form);
  input.focus();
  return () => {};
}
