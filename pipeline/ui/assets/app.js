// faultline UI charts: every element with data-chart is drawn with uPlot
// from the JSON in the script element its data-source names. Times are unix
// seconds, shown in UTC like the rest of the page. When a chart has drawn,
// its element gets data-drawn="1" (the browser test waits for it).
(function () {
  "use strict";

  var palette = ["#3566d6", "#2f9e5b", "#7b4bd1", "#c98a12", "#0f8b8d", "#b84b9e", "#5b6475", "#d63b3b"];
  var markColors = { deploy: "#3566d6", rollback: "#7b4bd1", start: "#d63b3b", detected: "#c98a12", resolved: "#2f9e5b" };

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  // timeAxis labels the x axis in 24-hour UTC (or dates, for weeks).
  function timeAxis(pattern, space) {
    var fmt = uPlot.fmtDate(pattern);
    return { space: space, values: function (u, vals) { return vals.map(function (v) { return fmt(utc(v)); }); } };
  }

  // markers draws the incident's events as labelled vertical lines.
  function markers(list) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx, dpr = window.devicePixelRatio || 1;
          var top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
          var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
          ctx.save();
          ctx.font = Math.round(11 * dpr) + "px system-ui, sans-serif";
          ctx.textBaseline = "top";
          list.forEach(function (m, i) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < left || x > right) { return; }
            var color = markColors[m.kind] || "#555";
            ctx.strokeStyle = color;
            ctx.fillStyle = color;
            ctx.lineWidth = 2 * dpr;
            ctx.setLineDash(m.kind === "detected" ? [4 * dpr, 3 * dpr] : []);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, bottom);
            ctx.stroke();
            var w = ctx.measureText(m.label).width;
            var tx = x + 4 * dpr + w > right ? x - 4 * dpr - w : x + 4 * dpr;
            ctx.fillText(m.label, tx, top + (2 + (i % 4) * 13) * dpr);
          });
          ctx.restore();
        }]
      }
    };
  }

  function versionLabel(v) { return v === "" ? "(no version)" : v; }

  function incidentChart(kind, data) {
    var pairs = kind === "logs" ? data.logs : data.requests;
    var names = kind === "logs" ? ["records", "errors"] : ["requests", "5xx"];
    var series = [{ label: "time (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" }];
    var cols = [data.x];
    var hasP95 = false;
    pairs.forEach(function (p, i) {
      var c = palette[i % palette.length];
      series.push({ label: versionLabel(p.version) + " " + names[0], stroke: c, width: 1.5, scale: "n", points: { show: false } });
      cols.push(p.total);
      series.push({ label: versionLabel(p.version) + " " + names[1], stroke: "#d63b3b", fill: "rgba(214,59,59,0.08)", dash: [6, 3], width: 2, scale: "n",
        points: { show: false } });
      cols.push(p.failed);
      if (p.p95) {
        hasP95 = true;
        series.push({ label: versionLabel(p.version) + " p95", stroke: c, dash: [2, 3], width: 1.5, scale: "s", points: { show: false },
          value: function (u, v) { return v == null ? "–" : (v * 1000).toFixed(0) + " ms"; } });
        cols.push(p.p95);
      }
    });
    var axes = [timeAxis("{HH}:{mm}", 50), { scale: "n", label: kind === "logs" ? "per minute" : "requests per minute" }];
    if (hasP95) {
      axes.push({ scale: "s", side: 1, grid: { show: false }, label: "p95",
        values: function (u, vals) { return vals.map(function (v) { return (v * 1000).toFixed(0) + " ms"; }); } });
    }
    return { series: series, data: cols, axes: axes, plugins: [markers(data.markers || [])],
      scales: { x: { time: true }, n: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } } } };
  }

  function weeklyChart(kind, data) {
    var series = [{ label: "week of", value: "{YYYY}-{MM}-{DD}" }];
    var cols = [data.x];
    data.series.forEach(function (s, i) {
      var c = palette[i % palette.length];
      series.push({ label: s.key, stroke: c, width: 2, points: { show: true, size: 6 },
        value: kind === "weekly-cfr" ? function (u, v) { return v == null ? "–" : (v * 100).toFixed(1) + "%"; } : undefined });
      cols.push(kind === "weekly-cfr" ? s.failure_rate : s.deployments);
    });
    var axes = [timeAxis("{YYYY}-{MM}-{DD}", 100), kind === "weekly-cfr"
      ? { values: function (u, vals) { return vals.map(function (v) { return (v * 100).toFixed(0) + "%"; }); } }
      : { label: "deploys" }];
    return { series: series, data: cols, axes: axes,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(kind === "weekly-cfr" ? 0.2 : 1, max) * 1.1]; } } } };
  }

  function draw(el) {
    var src = document.getElementById(el.dataset.source);
    if (!src) { return; }
    var data = JSON.parse(src.textContent);
    var kind = el.dataset.chart;
    var spec = kind === "logs" || kind === "requests" ? incidentChart(kind, data) : weeklyChart(kind, data);
    if (!data.x || data.x.length === 0) { return; }
    var opts = {
      width: Math.max(320, el.clientWidth),
      height: 260,
      tzDate: utc,
      series: spec.series,
      axes: spec.axes,
      scales: spec.scales,
      plugins: spec.plugins || [],
      cursor: { drag: { x: true, y: false } },
      hooks: { draw: [function () { el.dataset.drawn = "1"; }] }
    };
    var plot = new uPlot(opts, spec.data, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(320, el.clientWidth), height: 260 });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart]").forEach(draw);
  });
})();
