// The preview viewer: a stack of server-rendered frames (WADO-RS rendered, windowed on the
// server), prefetched around the current slice; wheel, arrow keys, slider and swipe scroll;
// presets and drag set the window; each slice's heat map (a transparent overlay rendered on the
// server from the run's activation maps) lies over exactly the image's rectangle.
(function () {
  "use strict";
  var root = document.getElementById("preview");
  if (!root) return;
  var base = root.dataset.base;
  var uids = root.dataset.instances.split(",");
  var key = parseInt(root.dataset.key, 10) || 0;
  var parts = root.dataset.window.split(",");
  var center = parseFloat(parts[0]), width = parseFloat(parts[1]);
  var index = key;
  var frame = document.getElementById("frame");
  var slider = document.getElementById("slice");
  var number = document.getElementById("slice-number");
  var heat = document.getElementById("heatmap");
  var heatToggle = document.getElementById("heat-toggle");
  var heatOpacity = document.getElementById("heat-opacity");
  var windowNow = document.getElementById("window-now");
  var heatBase = root.dataset.heatBase || "";
  var cache = {};
  var heatCache = {};
  var PREFETCH = 6;

  function url(i) {
    return base + uids[i] + "/rendered?window=" + Math.round(center) + "," + Math.max(1, Math.round(width)) + "&viewport=512,512&accept=image/jpeg";
  }
  function heatUrl(i) { return heatBase + uids[i] + ".png"; }
  function heatShown() { return !!(heat && heatToggle && heatToggle.checked); }
  function prefetch() {
    for (var d = 1; d <= PREFETCH; d++) {
      [index + d, index - d].forEach(function (i) {
        if (i < 0 || i >= uids.length) return;
        var u = url(i);
        if (!cache[u]) { var img = new Image(); img.src = u; cache[u] = img; }
        if (heatShown() && !heatCache[i]) { var h = new Image(); h.src = heatUrl(i); heatCache[i] = h; }
      });
    }
  }
  // The frame is fitted into the square stage keeping its aspect: the overlay covers the
  // image's rectangle, not the letterbox.
  function placeHeat() {
    if (!heat || !frame.naturalWidth) return;
    var box = frame.getBoundingClientRect();
    var scale = Math.min(box.width / frame.naturalWidth, box.height / frame.naturalHeight);
    var w = frame.naturalWidth * scale, h = frame.naturalHeight * scale;
    heat.style.left = (box.width - w) / 2 + "px"; heat.style.top = (box.height - h) / 2 + "px";
    heat.style.width = w + "px"; heat.style.height = h + "px";
  }
  frame.addEventListener("load", placeHeat);
  window.addEventListener("resize", placeHeat);
  if (heat) heat.addEventListener("error", function () { heat.hidden = true; });
  function show() {
    var u = url(index);
    frame.src = u;
    cache[u] = cache[u] || frame;
    slider.value = String(index);
    number.textContent = String(index + 1);
    windowNow.textContent = "W " + Math.round(width) + " / L " + Math.round(center);
    root.dataset.index = String(index);
    if (heat) {
      heat.hidden = !heatShown();
      if (heatShown()) heat.src = heatUrl(index);
      heat.style.opacity = String((heatOpacity ? heatOpacity.value : 60) / 100);
    }
    prefetch();
  }
  function go(i) {
    index = Math.max(0, Math.min(uids.length - 1, i));
    show();
  }
  root.addEventListener("wheel", function (e) { e.preventDefault(); go(index + (e.deltaY > 0 ? 1 : -1)); }, { passive: false });
  root.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" || e.key === "ArrowRight" || e.key === "PageDown") { e.preventDefault(); go(index + 1); }
    if (e.key === "ArrowUp" || e.key === "ArrowLeft" || e.key === "PageUp") { e.preventDefault(); go(index - 1); }
    if (e.key === "Home") go(0);
    if (e.key === "End") go(uids.length - 1);
  });
  slider.addEventListener("input", function () { go(parseInt(slider.value, 10)); });
  document.getElementById("to-key").addEventListener("click", function () { go(key); });
  var suspicious = (root.dataset.suspicious || "").split(",").filter(Boolean).map(Number);
  var nextSuspicious = document.getElementById("next-suspicious");
  if (nextSuspicious) nextSuspicious.addEventListener("click", function () {
    var after = suspicious.filter(function (i) { return i > index; });
    go(after.length ? after[0] : suspicious[0]);  // wraps round to the first
  });
  Array.prototype.forEach.call(document.querySelectorAll(".preset"), function (button) {
    button.addEventListener("click", function () {
      var w = button.dataset.window.split(",");
      center = parseFloat(w[0]); width = parseFloat(w[1]);
      cache = {};
      show();
    });
  });
  if (heatToggle) heatToggle.addEventListener("change", show);
  if (heatOpacity) heatOpacity.addEventListener("input", show);
  // Drag: horizontal changes the width, vertical the level; applied when the drag ends.
  var stage = document.getElementById("stage");
  var start = null;
  stage.addEventListener("pointerdown", function (e) { start = { x: e.clientX, y: e.clientY, c: center, w: width, touch: e.pointerType === "touch" }; stage.setPointerCapture(e.pointerId); });
  stage.addEventListener("pointerup", function (e) {
    if (!start) return;
    var dx = e.clientX - start.x, dy = e.clientY - start.y;
    if (start.touch && Math.abs(dy) > 20 && Math.abs(dy) > Math.abs(dx)) {
      go(index + (dy < 0 ? 1 : -1) * Math.max(1, Math.round(Math.abs(dy) / 30)));  // swipe scrolls
    } else if (Math.abs(dx) + Math.abs(dy) > 3) {
      width = Math.max(1, start.w + dx * 4); center = start.c + dy * 2; cache = {}; show();
    }
    start = null;
  });
  show();
  root.focus();
})();
