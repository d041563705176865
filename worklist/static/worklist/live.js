// Live dashboard: the worklist re-orders itself and critical alerts arrive without a reload.
// Two sockets (/ws/worklist/, /ws/alerts/) reconnect by themselves; after a reconnect the alert
// socket resumes from the last sequence number seen, and a periodic resync covers lost pushes.
(function () {
  "use strict";
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var table = document.getElementById("worklist");
  var inbox = document.getElementById("inbox");
  var banner = document.getElementById("alert-banner");
  var digestBox = document.getElementById("digest-box");
  var indicator = document.getElementById("connection");
  var muteButton = document.getElementById("mute");
  var state = { worklist: "connecting", alerts: "connecting" };
  var alerts = {};  // seq -> latest frame
  var digests = [];  // digest frames received (the rate cap's held alerts), until closed
  var seenDigests = {};  // digest_id -> true: shown on this page already (sound once)
  var closedDigests = JSON.parse(sessionStorage.getItem("alerts.closedDigests") || "[]");
  var lastSeq = Number(sessionStorage.getItem("alerts.lastSeq") || 0);
  var muted = localStorage.getItem("alerts.muted") === "1";

  // The status filter applies when chosen (a listener: the CSP allows no inline handler).
  document.querySelectorAll("select[data-submit-on-change]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  function showConnection() {
    if (!indicator) return;
    var values = Object.keys(state).map(function (key) { return state[key]; });
    var live = values.every(function (value) { return value === "live" || value === "unused"; });
    var refused = values.some(function (value) { return value === "refused"; });
    indicator.textContent = live ? "● Live" : refused ? "○ Not allowed for your role" : "○ Reconnecting…";
    indicator.className = "connection " + (live ? "live" : "down");
  }

  function socket(path, name, handlers) {
    var delay = 500;
    function open() {
      var ws = new WebSocket(scheme + location.host + path);
      ws.onopen = function () {
        delay = 500;
        state[name] = "live";
        showConnection();
        if (handlers.open) handlers.open(ws);
      };
      ws.onmessage = function (event) { handlers.message(JSON.parse(event.data), ws); };
      ws.onclose = function (event) {
        state[name] = "down";
        showConnection();
        if (event.code === 4401) { location.reload(); return; }  // session ended: sign in again
        if (event.code === 4403 || event.code === 4404) { state[name] = "refused"; showConnection(); return; }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
      handlers.current = ws;
    }
    open();
    return handlers;
  }

  // Re-render server-side rows of `element` (its data-rows-url), at most once per 150 ms burst.
  function rowsRefresher(element, show) {
    var timer = null;
    return function () {
      if (!element || timer) return;
      timer = setTimeout(function () {
        timer = null;
        fetch(element.dataset.rowsUrl, { credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.text() : null; })
          .then(function (html) { if (html !== null) show(html); });
      }, 150);
    };
  }

  // ---- worklist ------------------------------------------------------------------------
  var refreshRows = rowsRefresher(table, function (html) {
    table.querySelector("tbody").innerHTML = html;
    document.dispatchEvent(new Event("worklist:updated"));
  });
  if (table) {
    socket("/ws/worklist/", "worklist", {
      open: function () { refreshRows(); },
      message: function (frame) { if (frame.type === "item" || frame.type === "items") refreshRows(); },
    });
  } else {
    state.worklist = "unused";
  }

  // ---- alerts --------------------------------------------------------------------------
  function beep() {
    if (muted) return;
    try {
      var context = new (window.AudioContext || window.webkitAudioContext)();
      var tone = context.createOscillator();
      var gain = context.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.15;
      tone.connect(gain);
      gain.connect(context.destination);
      tone.start();
      tone.stop(context.currentTime + 0.4);
    } catch (error) { /* no audio device: the banner still shows */ }
  }
  if (muteButton) {
    var paint = function () {
      muteButton.textContent = muted ? "Sound off" : "Sound on";
      muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    };
    paint();
    muteButton.addEventListener("click", function () {
      muted = !muted;
      localStorage.setItem("alerts.muted", muted ? "1" : "0");
      paint();
    });
  }

  function text(tag, className, value) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = value;
    return node;
  }

  var alertSocket = null;
  function acknowledge(frame) {
    if (alertSocket && alertSocket.current && alertSocket.current.readyState === 1) {
      alertSocket.current.send(JSON.stringify({ type: "ack", alert_id: frame.alert_id, screen: inbox ? "inbox" : "dashboard" }));
    }
  }

  function renderDigests(container, withLinks) {
    digests.forEach(function (digest) {
      var card = document.createElement("section");
      card.className = "digest";
      card.dataset.digestId = digest.digest_id;
      card.setAttribute("aria-label", "Alert digest");
      card.appendChild(text("h2", "", "Digest: " + digest.alerts.length + " alert" +
        (digest.alerts.length === 1 ? "" : "s") + " held by the rate cap (" + digest.rate_cap +
        " per " + digest.window_minutes + " min)"));
      var list = document.createElement("ul");
      digest.alerts.forEach(function (item) {
        var entry = document.createElement("li");
        var words = item.label + " · " + (item.accession_number || "no accession") + " · " +
          (item.patient_location || "location unknown") + " · " + item.state;
        if (withLinks) {  // study pages are for radiologists and administrators
          var link = text("a", "", words);
          link.href = "/worklist/studies/" + item.study_id + "/";
          entry.appendChild(link);
        } else {
          entry.textContent = words;
        }
        list.appendChild(entry);
      });
      card.appendChild(list);
      var dismiss = text("button", "", "Close digest");
      dismiss.type = "button";
      dismiss.addEventListener("click", function () {
        digests = digests.filter(function (other) { return other !== digest; });
        closedDigests.push(digest.digest_id);
        sessionStorage.setItem("alerts.closedDigests", JSON.stringify(closedDigests.slice(-50)));
        renderBanner();
      });
      card.appendChild(dismiss);
      container.appendChild(card);
    });
  }

  function appendActions(container, frame) {
    var ack = text("button", "", "Acknowledge");
    ack.type = "button";
    ack.addEventListener("click", function () { acknowledge(frame); });
    container.appendChild(ack);
    var link = text("a", "viewer", "Open study");
    link.href = "/worklist/studies/" + frame.study_id + "/";
    container.appendChild(link);
    if (frame.preview_url) {
      var preview = text("a", "viewer", "Open preview");
      preview.href = frame.preview_url;
      container.appendChild(preview);
    }
  }
  // The patient is never in a socket frame: the banner asks the (audited) study API for it.
  var patients = {};
  function patientInto(element, frame) {
    if (patients[frame.study_id]) { element.textContent = patients[frame.study_id]; return; }
    fetch("/api/studies/" + frame.study_id + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (study) {
        if (!study) return;
        patients[frame.study_id] = study.patient_summary;
        element.textContent = study.patient_summary;
      })
      .catch(function () { /* shown without the name; the study page has it */ });
  }

  function renderBanner() {
    if (digestBox) {  // the inbox: digests only, the alerts are its list
      digestBox.innerHTML = "";
      digestBox.hidden = digests.length === 0;
      renderDigests(digestBox, false);
    }
    if (!banner) return;
    var open = Object.keys(alerts).map(function (key) { return alerts[key]; })
      .filter(function (frame) { return frame.state === "open" || frame.state === "escalated"; })
      .sort(function (a, b) { return a.seq - b.seq; });
    var loud = open.filter(function (frame) { return frame.delivery !== "digest"; });
    var quiet = open.filter(function (frame) { return frame.delivery === "digest"; });
    banner.innerHTML = "";
    banner.hidden = open.length === 0 && digests.length === 0;
    loud.forEach(function (frame) {
      var card = document.createElement("section");
      card.className = "critical " + frame.state;
      card.dataset.seq = frame.seq;
      card.setAttribute("aria-label", "Critical AI alert " + frame.label);
      if (frame.heatmap_url) {
        var image = document.createElement("img");
        image.src = frame.heatmap_url;
        image.alt = "Key image with heat map for " + frame.label;
        image.className = "key-image";
        card.appendChild(image);
      }
      var body = document.createElement("div");
      body.appendChild(text("h2", "", (frame.state === "escalated" ? "ESCALATED · " : "") + "AI flag: suspected " + frame.label.toLowerCase()));
      var who = text("p", "patient", "");
      body.appendChild(who);
      patientInto(who, frame);
      body.appendChild(text("p", "", frame.modality + " · " + (frame.accession_number || "no accession") + " · " +
        (frame.patient_location || "location unknown") + (frame.score !== null ? " · score " + frame.score.toFixed(2) : "")));
      body.appendChild(text("p", "notice", frame.notice));
      var buttons = document.createElement("div");
      buttons.className = "actions";
      appendActions(buttons, frame);
      body.appendChild(buttons);
      card.appendChild(body);
      banner.appendChild(card);
    });
    // Below the interrupting alerts: digests, then the alerts listed quietly.
    renderDigests(banner, true);
    if (quiet.length) {
      var held = document.createElement("section");
      held.className = "held";
      held.setAttribute("aria-label", "Alerts held for a digest");
      held.appendChild(text("h2", "", quiet.length + " more alert" + (quiet.length === 1 ? "" : "s") +
        " listed quietly (rate cap); a digest follows"));
      quiet.forEach(function (frame) {
        var row = document.createElement("p");
        row.dataset.seq = frame.seq;
        row.appendChild(text("span", "", "AI flag: " + frame.label + " · " + frame.modality + " · " +
          (frame.accession_number || "no accession") + " · " + (frame.patient_location || "location unknown") + " "));
        appendActions(row, frame);
        held.appendChild(row);
      });
      banner.appendChild(held);
    }
  }

  var refreshInbox = rowsRefresher(inbox, function (html) { inbox.innerHTML = html; });

  alertSocket = socket("/ws/alerts/", "alerts", {
    open: function (ws) {
      // First connection: what is open now. After a reconnect: everything missed since.
      // name what the page holds, so the server sends none of it again
      var have = Object.keys(alerts).map(Number).sort(function (a, b) { return b - a; })
        .slice(0, 1000).map(function (seq) { return [seq, alerts[seq].state]; });
      ws.send(JSON.stringify(lastSeq > 0 ? { type: "resume", after: lastSeq, have: have } : { type: "resync" }));
      if (lastSeq > 0) ws.send(JSON.stringify({ type: "resync" }));
    },
    message: function (frame) {
      if (frame.type === "digest") {
        // A resync re-sends the last window's digests: show each once, sound only when new.
        if (seenDigests[frame.digest_id] || closedDigests.indexOf(frame.digest_id) !== -1) return;
        seenDigests[frame.digest_id] = true;
        digests.push(frame);
        beep();
        renderBanner();
        return;
      }
      if (frame.type !== "alert") return;
      var known = alerts[frame.seq];
      alerts[frame.seq] = frame;
      if (frame.seq > lastSeq) {
        lastSeq = frame.seq;
        sessionStorage.setItem("alerts.lastSeq", String(lastSeq));
      }
      var loudNow = frame.delivery !== "digest" && (frame.state === "open" || frame.state === "escalated");
      if ((!known || known.state !== frame.state) && loudNow) beep();
      renderBanner();
      refreshInbox();
    },
  });
  setInterval(function () {
    if (alertSocket.current && alertSocket.current.readyState === 1) {
      alertSocket.current.send(JSON.stringify({ type: "resync" }));
    }
  }, 30000);
  showConnection();
})();
