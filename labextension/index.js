// hpcspawner's JupyterLab notification before the batch job's time limit ends
// (docs/sessions.md). It asks the server's own route (hpcspawner.server_extension), which asks the
// hub: an extension or an admin's change of the time limit moves the warning. Built with
// `jupyter labextension build labextension` (scripts/build-labextension); no imports: the
// notification is JupyterLab's own command, apputils:notify.
const ASK_EVERY = 30000; // ms

function baseUrl() {
  const el = document.getElementById("jupyter-config-data");
  const config = el ? JSON.parse(el.textContent || "{}") : {};
  return config.baseUrl || "/";
}

function xsrf() {
  // the server takes a cookie-authenticated request only with its XSRF token (as
  // JupyterLab's own requests send it)
  const found = document.cookie.match("\\b_xsrf=([^;]*)\\b");
  return found ? decodeURIComponent(found[1]) : "";
}

function left(seconds) {
  const minutes = Math.max(1, Math.round(seconds / 60));
  return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
}

const plugin = {
  id: "hpcspawner-session:plugin",
  description: "Warns before the batch job's time limit ends, with a way to extend it.",
  autoStart: true,
  activate: (app) => {
    let shown = null; // the id of the notification on screen
    let shownFor = 0; // the end it warns of
    async function check() {
      let answer;
      try {
        const response = await fetch(`${baseUrl()}hpcspawner/session`, {
          credentials: "same-origin", headers: {"X-XSRFToken": xsrf()}});
        if (!response.ok) { return; }
        answer = await response.json();
      } catch (err) {
        return;
      }
      const remaining = answer.ends - answer.now;
      const due = answer.ends > 0 && remaining <= answer.warn_before;
      if (!due || shownFor === answer.ends) {
        if (!due && shown !== null) {
          await app.commands.execute("apputils:dismiss-notification", {id: shown});
          shown = null;
          shownFor = 0;
        }
        return;
      }
      if (shown !== null) {
        await app.commands.execute("apputils:dismiss-notification", {id: shown});
      }
      const when = new Date(answer.ends * 1000).toISOString().slice(0, 16).replace("T", " ");
      const more = answer.can_extend ? "Extend it from its card on the hub's home page."
        : "Save your work.";
      const actions = answer.home ? [{label: answer.can_extend ? "Extend on the hub" : "Open the hub",
        caption: "Open the hub's home page in a new tab", displayType: "accent",
        callback: () => window.open(answer.home, "_blank")}] : [];
      shown = await app.commands.execute("apputils:notify", {
        message: `This server's batch job ends at ${when} UTC, in ${left(remaining)}. ${more}`,
        type: "warning",
        options: {autoClose: false, actions},
      });
      shownFor = answer.ends;
    }
    app.restored.then(() => {
      check();
      setInterval(check, ASK_EVERY);
    });
  },
};

export default plugin;
