// The instance browser: filters over the run's rows (window.HELMFLOW_INSTANCES), shown 100 at a time.
// Row: [instance id, group, perturbation, prompt, answer, choice log-probs, gold, score (1 correct, 0 not, null),
// input]. The input (the instance's own text: the question) is shown first and the whole prompt, whose
// instructions and exemplars come before the question, folded under it. Rows written before the input was
// added have 8 fields: they show the prompt's end, where the question is.
(function () {
  var PAGE = 100;
  var data = window.HELMFLOW_INSTANCES;
  var rows = data.rows;
  // Lower-cased text to search, built once, so typing stays fast on 10,000 rows.
  var haystack = rows.map(function (r) {
    return (r[0] + "\n" + (r[8] || "") + "\n" + r[3] + "\n" + r[4] + "\n" + r[6]).toLowerCase();
  });
  var $ = function (id) { return document.getElementById(id); };
  var page = 0;
  var matches = [];

  function fill(select, values) {
    values.forEach(function (v) {
      var option = document.createElement("option");
      option.value = v; option.textContent = v === "" ? "(unperturbed)" : v;
      select.appendChild(option);
    });
  }
  function distinct(k) {
    var seen = {};
    rows.forEach(function (r) { seen[r[k]] = true; });
    return Object.keys(seen).sort();
  }
  fill($("filter-group"), distinct(1).filter(function (g) { return g !== ""; }));
  // The perturbation filter's "" means every perturbation, so the unperturbed rows get their own value.
  distinct(2).forEach(function (p) {
    var option = document.createElement("option");
    option.value = p === "" ? "(none)" : p; option.textContent = p === "" ? "(unperturbed)" : p;
    $("filter-perturbation").appendChild(option);
  });

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  // The input first, then the whole prompt folded under it.
  function question(td, r) {
    var input = document.createElement("div");
    input.className = "input";
    if (r.length > 8) {
      input.textContent = r[8];
      if (r[2]) {  // the stored input is the unperturbed text; the whole prompt holds the perturbed one
        var note = document.createElement("span");
        note.className = "muted small";
        note.textContent = " (before the perturbation)";
        input.appendChild(note);
      }
    } else {
      input.textContent = r[3].length > 90 ? r[3].slice(-90).replace(/^\S*\s/, "…") : r[3];
    }
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "whole prompt (" + r[3].length.toLocaleString("en-US") + " characters)";
    var pre = document.createElement("pre");
    pre.textContent = r[3];
    details.appendChild(summary); details.appendChild(pre);
    td.appendChild(input); td.appendChild(details);
  }
  function render() {
    var body = $("instance-rows");
    body.textContent = "";
    var pages = Math.max(1, Math.ceil(matches.length / PAGE));
    page = Math.min(page, pages - 1);
    matches.slice(page * PAGE, page * PAGE + PAGE).forEach(function (i) {
      var r = rows[i];
      var tr = document.createElement("tr");
      tr.dataset.index = i;
      cell(tr, r[0]); cell(tr, r[1]); cell(tr, r[2]);
      question(cell(tr, "", "prompt"), r);
      cell(tr, r[4], "answer");
      cell(tr, r[5].length ? r[5].map(function (x, k) { return String.fromCharCode(65 + k) + " " + x.toFixed(3); }).join("  ") : "", "small");
      cell(tr, r[6], "gold");
      cell(tr, r[7] === null ? "" : (r[7] >= 1 ? "yes" : (r[7] <= 0 ? "no" : r[7].toFixed(3))), r[7] === null ? "" : (r[7] >= 1 ? "yes" : "no"));
      body.appendChild(tr);
    });
    $("match-count").textContent = matches.length + " of " + rows.length + " rows";
    $("page-label").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  function apply() {
    var text = $("filter-text").value.trim().toLowerCase();
    var correct = $("filter-correct").value;
    var group = $("filter-group").value;
    var perturbation = $("filter-perturbation").value;
    matches = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (group && r[1] !== group) continue;
      if (perturbation && r[2] !== (perturbation === "(none)" ? "" : perturbation)) continue;
      if (correct === "correct" && !(r[7] >= 1)) continue;
      if (correct === "incorrect" && !(r[7] !== null && r[7] < 1)) continue;
      if (text && haystack[i].indexOf(text) < 0) continue;
      matches.push(i);
    }
    page = 0;
    render();
  }
  ["filter-text", "filter-correct", "filter-group", "filter-perturbation"].forEach(function (id) {
    $(id).addEventListener("input", apply);
  });
  $("prev").addEventListener("click", function () { page -= 1; render(); });
  $("next").addEventListener("click", function () { page += 1; render(); });
  apply();
})();
