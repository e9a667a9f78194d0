// Render each chart: its Vega-Lite spec sits in a JSON <script> beside the page (no request is made).
(function () {
  document.querySelectorAll("div.chart[data-chart]").forEach(function (div) {
    var spec = JSON.parse(document.getElementById("chart-spec-" + div.dataset.chart).textContent);
    // No action menu: its links point to online editors.
    vegaEmbed(div, spec, { actions: false, renderer: "svg" }).catch(function (error) {
      div.textContent = "chart failed: " + error;
    });
  });
})();
