// Live progress on a request page: poll the progress JSON once a second until the request
// reaches an end state. No framework; the page works (static) without it.
(function () {
  "use strict";
  var stateEl = document.getElementById("request-state");
  if (!stateEl) { return; }
  var url = stateEl.getAttribute("data-progress-url");
  var ended = ["active", "rejected", "cancelled", "failed"];
  function render(data) {
    stateEl.textContent = data.state_label;
    stateEl.setAttribute("data-state", data.state);
    var list = document.getElementById("steps");
    list.textContent = "";
    data.steps.forEach(function (step) {
      var li = document.createElement("li");
      li.className = "step-" + step.status;
      var strong = document.createElement("strong");
      strong.textContent = step.task_label;
      li.appendChild(strong);
      li.appendChild(document.createTextNode(" — " + step.status_label +
        (step.message_label ? ": " + step.message_label : "")));
      list.appendChild(li);
    });
    announce(data);
    var reason = document.getElementById("request-reason");
    if (data.reason) { reason.textContent = data.reason; reason.hidden = false; }
    var link = document.getElementById("server-link");
    if (data.server_url && link.hidden) {
      var a = document.createElement("a");
      a.href = data.server_url;
      a.textContent = link.getAttribute("data-label") || data.server_url;
      link.appendChild(a);
      link.hidden = false;
    }
    var cancel = document.getElementById("cancel-form");
    if (cancel && data.state !== "pending_approval" && data.state !== "approved") { cancel.hidden = true; }
    return ended.indexOf(data.state) === -1;
  }
  // The live region gets one short sentence when the state or the latest step changes, not the
  // whole list on every poll (which a screen reader would read out once a second).
  var announcer = document.getElementById("progress-announcer");
  function announce(data) {
    if (!announcer) { return; }
    var last = data.steps.length ? data.steps[data.steps.length - 1] : null;
    var text = data.state_label + (last ? ". " + last.task_label + " — " + last.status_label : "");
    text = text.charAt(0).toUpperCase() + text.slice(1);  // a sentence: the label is lower case mid-line
    if (announcer.textContent !== text) { announcer.textContent = text; }
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) { if (render(data)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (ended.indexOf(stateEl.getAttribute("data-state")) === -1) { setTimeout(poll, 500); }
})();
