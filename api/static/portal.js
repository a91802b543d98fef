/* The portal's small enhancements; every page also works without them.
 *
 * - Metric charts: pages render a #chart-config JSON block and one <figure class="chart">
 *   per metric key; all series are fetched in one call and drawn with the vendored Chart.js.
 * - Run selection: the "Compare selected" button counts the ticked runs (2 to 10).
 * - Busy state: a search form marks its results region busy while the next page loads.
 * - Monitoring charts: drawn from the #monitor-charts JSON block the page carries.
 * - Auto-refresh: a page marked data-auto-refresh reloads while a job runs (not while typing).
 * - Confirmation: forms with data-confirm (undeploy, delete, roll back) ask first.
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

  // --- monitoring charts: every series is in the page (#monitor-charts), x is epoch ms ---

  function timeLabel(ms, withDate) {
    var d = new Date(ms);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return withDate ? pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + time : time;
  }

  var HOUR = 3600000;
  var TICK_STEPS = [HOUR / 12, HOUR / 4, HOUR / 2, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 48 * HOUR, 168 * HOUR];

  function tickStep(config) {
    // A round interval (whole hours or days) giving at most 7 ticks; the range is aligned to it.
    var span = config.end_ms - config.start_ms;
    return TICK_STEPS.find(function (step) { return span / step <= 7; }) || TICK_STEPS[TICK_STEPS.length - 1];
  }

  function drawMonitorChart(figure, chart, config) {
    var series = chart.series || [];
    if (!series.length || !series.some(function (s) { return s.points.length; })) {
      setState(figure, "empty", "No data in this range.");
      return;
    }
    var multiDay = config.end_ms - config.start_ms > 86400000;
    var datasets = series.map(function (item, index) {
      var color = PALETTE[index % PALETTE.length];
      return {
        label: item.label,
        data: item.points.map(function (p) { return { x: p[0], y: toNumber(p[1]) }; }),
        borderColor: color,
        backgroundColor: chart.bars ? color + "99" : color,
        borderWidth: 2,
        pointRadius: item.points.length > 1 ? 2 : 4,
        spanGaps: false,
      };
    });
    if (typeof chart.threshold === "number") {
      datasets.push({
        label: "threshold", data: [{ x: config.start_ms, y: chart.threshold }, { x: config.end_ms, y: chart.threshold }],
        borderColor: "#c62828", borderDash: [5, 4], borderWidth: 1, pointRadius: 0,
      });
    }
    // eslint-disable-next-line no-undef
    new Chart(figure.querySelector("canvas"), {
      type: chart.bars ? "bar" : "line",
      data: { datasets: datasets },
      options: {
        animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear", min: config.start_ms, max: config.end_ms, offset: !!chart.bars,
            ticks: { stepSize: tickStep(config), autoSkip: false, callback: function (v) { return timeLabel(v, multiDay); } },
          },
          y: {
            beginAtZero: true,
            ticks: { maxTicksLimit: 6, callback: chart.percent ? function (v) { return Math.round(v * 1000) / 10 + "%"; } : undefined },
          },
        },
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom", labels: { boxWidth: 12, boxHeight: 2 } },
          tooltip: { callbacks: { title: function (items) { return items.length ? timeLabel(items[0].parsed.x, true) + " UTC" : ""; } } },
        },
      },
    });
    setState(figure, "ready", "");
  }

  function monitorCharts() {
    var block = document.getElementById("monitor-charts");
    if (!block) return;
    var config = JSON.parse(block.textContent);
    var figures = Array.prototype.slice.call(document.querySelectorAll("[data-monitor-charts] figure.chart"));
    if (typeof window.Chart === "undefined") {
      figures.forEach(function (f) { setState(f, "error", "The chart library did not load; reload the page."); });
      return;
    }
    figures.forEach(function (figure) {
      var chart = config.charts.find(function (c) { return c.key === figure.dataset.key; });
      if (chart) drawMonitorChart(figure, chart, config);
    });
  }

  // --- pages that watch a job (a version validating, a deploy, a rollout) reload themselves,
  // but never while someone is typing in a form ---

  function autoRefresh() {
    var marker = document.querySelector("[data-auto-refresh]");
    if (!marker) return;
    var seconds = parseFloat(marker.dataset.autoRefresh) || 5;
    var dirty = false;
    document.addEventListener("input", function () { dirty = true; });
    window.setTimeout(function tick() {
      var active = document.activeElement;
      var typing = active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
      if (dirty || typing) { window.setTimeout(tick, seconds * 1000); return; }
      window.location.reload();
    }, seconds * 1000);
  }

  function confirmForms() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    busyForms();
    compareSelection();
    loadCharts();
    monitorCharts();
    autoRefresh();
    confirmForms();
  });
})();
