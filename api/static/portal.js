/* The portal's small enhancements; every page also works without them.
 *
 * - Metric charts: pages render a #chart-config JSON block and one <figure class="chart">
 *   per metric key; all series are fetched in one call and drawn with the vendored Chart.js.
 * - Run selection: the "Compare selected" button counts the ticked runs (2 to 10).
 * - Busy state: a search form marks its results region busy while the next page loads.
 */
(function () {
  "use strict";

  var PALETTE = ["#2f5bea", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#1098ad", "#c2255c", "#5c940d", "#364fc7", "#862e9c"];

  function setState(figure, state, message) {
    figure.dataset.state = state;
    var status = figure.querySelector(".chart-status");
    if (status) status.textContent = message || "";
  }

  function toNumber(value) {
    // NaN and the infinities arrive as strings: leave a gap in the line.
    return typeof value === "number" && isFinite(value) ? value : null;
  }

  function draw(figure, series, runs) {
    var canvas = figure.querySelector("canvas");
    var datasets = series.map(function (item) {
      var index = runs.findIndex(function (run) { return run.id === item.run_id; });
      var run = runs[index] || { name: item.run_id };
      var color = PALETTE[index % PALETTE.length];
      return {
        label: run.name,
        data: item.points.map(function (point) { return { x: point[0], y: toNumber(point[1]) }; }),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        pointRadius: item.points.length > 1 ? 0 : 4,
        pointHoverRadius: 4,
        spanGaps: false,
      };
    });
    // eslint-disable-next-line no-undef
    new Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
          y: { ticks: { maxTicksLimit: 6 } },
        },
        plugins: {
          legend: { display: runs.length > 1, position: "bottom", labels: { boxWidth: 12, boxHeight: 2 } },
        },
      },
    });
    setState(figure, "ready", "");
  }

  function loadCharts() {
    var block = document.getElementById("chart-config");
    var figures = Array.prototype.slice.call(document.querySelectorAll("figure.chart"));
    if (!block || !figures.length) return;
    var config = JSON.parse(block.textContent);
    if (typeof window.Chart === "undefined") {
      figures.forEach(function (f) { setState(f, "error", "The chart library did not load; reload the page."); });
      return;
    }
    figures.forEach(function (f) { setState(f, "loading", "Loading chart…"); });
    var query = new URLSearchParams();
    config.runs.forEach(function (run) { query.append("run", run.id); });
    config.keys.forEach(function (key) { query.append("key", key); });
    query.set("max_points", String(config.max_points));
    fetch(config.url + "?" + query.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok || !body || !body.series) {
            throw new Error((body && body.message) || "the server answered " + response.status);
          }
          return body.series;
        });
      })
      .then(function (series) {
        figures.forEach(function (figure) {
          var mine = series.filter(function (item) { return item.key === figure.dataset.key; });
          if (!mine.length) setState(figure, "empty", "No points logged for this metric.");
          else draw(figure, mine, config.runs);
        });
      })
      .catch(function (error) {
        figures.forEach(function (figure) {
          setState(figure, "error", "Could not load the chart: " + error.message + ".");
          var status = figure.querySelector(".chart-status");
          var retry = document.createElement("button");
          retry.type = "button";
          retry.className = "secondary small";
          retry.textContent = "Try again";
          retry.addEventListener("click", loadCharts);
          status.appendChild(document.createTextNode(" "));
          status.appendChild(retry);
        });
      });
  }

  function compareSelection() {
    var form = document.querySelector("form[data-compare]");
    if (!form) return;
    var max = parseInt(form.dataset.max, 10) || 10;
    var button = form.querySelector("button[type=submit]");
    var hint = document.getElementById("compare-hint");
    var boxes = Array.prototype.slice.call(document.querySelectorAll('input[type=checkbox][form="' + form.id + '"]'));
    function update() {
      var count = boxes.filter(function (box) { return box.checked; }).length;
      button.disabled = count < 2 || count > max;
      button.textContent = count >= 2 ? "Compare " + count + " runs" : "Compare selected";
      hint.textContent = count > max ? "Select at most " + max + " runs." : count < 2 ? "Select 2 to " + max + " runs to compare." : "";
      boxes.forEach(function (box) { box.closest("tr").classList.toggle("selected", box.checked); });
    }
    boxes.forEach(function (box) { box.addEventListener("change", update); });
    update();
  }

  function busyForms() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-busy]"), function (form) {
      form.addEventListener("submit", function () {
        var region = document.getElementById(form.dataset.busy);
        if (region) region.setAttribute("aria-busy", "true");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    busyForms();
    compareSelection();
    loadCharts();
  });
})();
