// Deadline countdowns: minutes left (or overdue) next to each read-by time, refreshed each second.
(function () {
  function render() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (node) {
      var due = Date.parse(node.getAttribute("datetime"));
      if (isNaN(due)) return;
      var seconds = Math.round((due - now) / 1000);
      var overdue = seconds < 0;
      var abs = Math.abs(seconds);
      var hours = Math.floor(abs / 3600);
      var minutes = Math.floor((abs % 3600) / 60);
      var text = hours > 0
        ? hours + " h " + String(minutes).padStart(2, "0") + " m"
        : minutes + ":" + String(abs % 60).padStart(2, "0");
      node.textContent = overdue ? "overdue " + text : text;
      node.classList.toggle("overdue", overdue);
      node.classList.toggle("soon", !overdue && seconds < 600);
    });
  }
  render();
  setInterval(render, 1000);
})();
