// Render each chart: its Vega-Lite spec sits in a JSON <script> beside the page (no request is made).
// Each rendered chart's Vega view is kept in window.HELMFLOW_VIEWS under its chart index, so a reader's
// console (and the report's tests) can ask a chart what it drew: view.scale("y").domain(), view.data(...).
(function () {
  var views = (window.HELMFLOW_VIEWS = {});
  document.querySelectorAll("div.chart[data-chart]").forEach(function (div) {
    var spec = JSON.parse(document.getElementById("chart-spec-" + div.dataset.chart).textContent);
    // No action menu: its links point to online editors.
    vegaEmbed(div, spec, { actions: false, renderer: "svg" }).then(function (result) {
      views[div.dataset.chart] = result.view;
    }).catch(function (error) {
      div.textContent = "chart failed: " + error;
    });
  });
})();
