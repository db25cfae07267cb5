// ai_agent_safety console: live updates. The pages work without this file;
// with it, a container marked data-live="<fragment URL>" is fetched again
// whenever the server sends an event (a NOTIFY heard on the approver's own
// connections). Events carry no request data: the page is read again.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  var state = document.getElementById("live-state");
  if (!live || !window.EventSource || !window.fetch) {
    return;
  }
  var busy = false;
  var again = false;
  var last = null;
  function show(text, name) {
    if (state) {
      state.textContent = text;
      state.setAttribute("data-state", name);
    }
  }
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(live.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || !r.ok) {
          show("signed out: reload the page", "error");
          return null;
        }
        return r.text();
      })
      .then(function (html) {
        if (html !== null && html !== last) {
          last = html;
          live.innerHTML = html;
          decided();
        }
      })
      .catch(function () {
        show("could not refresh: reload the page", "error");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }
  // A request page whose request was decided meanwhile hides its forms
  // (which are outside the live part, so typing is never interrupted).
  function decided() {
    var status = live.querySelector("[data-status]");
    var forms = document.querySelector(".decide");
    if (status && forms && status.getAttribute("data-status") !== "pending") {
      forms.hidden = true;
    }
  }
  var events = new EventSource("/events");
  events.addEventListener("open", function () {
    show("live", "live");
    refresh(); // whatever happened before the stream opened
  });
  events.addEventListener("error", function () {
    show("reconnecting…", "reconnecting");
  });
  events.addEventListener("request", refresh);
  events.addEventListener("decision", refresh);
})();
