// The instance browser: filters over one run's predictions, shown 100 at a time.
// Its data (flows/report/content.py describes the layout): an index, window.HELMFLOW_INSTANCES (the
// run, its row count, groups, perturbations and data pages), and data pages of about 2,000 rows,
// scripts added here as they are needed, each calling window.HELMFLOW_PAGE(run, k, page as JSON text).
// The page on show is read at once; a filter reads every page in turn (a group filter only the pages
// that hold the group) and shows the rows it has found so far, "searching k of N pages", until it has
// read them all.
// A row shows the input (the instance's own text: the question) first and the whole prompt, whose
// instructions and exemplars come before the question, folded under it. A row with no input shows the
// prompt's end, where the question is.
(function () {
  var VIEW = 100;  // rows shown at a time
  var AHEAD = 4;  // data pages asked for ahead of the one a search waits for
  var index = window.HELMFLOW_INSTANCES;
  var pages = index.pages;  // [script, first row number, rows, groups in it]
  var total = index.rows;
  var rows = new Array(total);  // row number -> row, filled as pages are read
  var state = pages.map(function () { return 0; });  // 0 not asked for, 1 asked for, 2 read, 3 unreadable
  var read = [];  // page k -> {rows, heads, and the heads' search results for one text}
  var $ = function (id) { return document.getElementById(id); };
  var view = 0;
  var filter = null;  // the filter in force; null: every row
  var matches = [];  // with a filter: the row numbers found so far, in order
  var scanned = 0;  // with a filter: the pages searched so far

  function option(select, value, label) {
    var o = document.createElement("option");
    o.value = value; o.textContent = label;
    select.appendChild(o);
  }
  index.groups.filter(function (g) { return g !== ""; }).sort().forEach(function (g) {
    option($("filter-group"), g, g);
  });
  // The perturbation filter's "" means every perturbation, so the unperturbed rows get their own value.
  index.perturbations.slice().sort().forEach(function (p) {
    option($("filter-perturbation"), p === "" ? "(none)" : p, p === "" ? "(unperturbed)" : p);
  });

  // An answer or gold answer: option k as its letter and text, anything else as the text it is.
  function shown(value, options) {
    return typeof value === "number" ? index.letters[value] + ". " + options[value] : value;
  }

  window.HELMFLOW_PAGE = function (run, k, page) {
    if (run !== index.run || state[k] === 2) return;
    page = JSON.parse(page);
    var at = pages[k][1];
    var list = [];
    page.instances.forEach(function (d) {
      var heads = [], rests = [];  // per variant: its head and the rest of its prompt ({text, its lower case})
      // The input and the options: their text, or where the first variant's rest has it.
      var placed = function (t) {
        return t === null || typeof t === "string" ? t : rests[0].text.slice(t[0], t[0] + t[1]);
      };
      var options = null;
      var inst = {id: d[0], group: index.groups[d[1]], input: null, gold: null, hay: null};
      d[5].forEach(function (v, j) {
        var e = v[1], h, rest;
        if (typeof e === "number") {  // the same prompt as variant e: one text, searched once
          h = heads[e]; rest = rests[e];
        } else {
          var ref = j === 0 ? "" : rests[0].text;
          h = e[0];
          rest = {text: e[1] === 0 && e[3] === 0 ? e[2] : ref.slice(0, e[1]) + e[2] + ref.slice(ref.length - e[3]),
                  low: null};
        }
        heads.push(h); rests.push(rest);
        if (j === 0) { options = d[3].map(placed); inst.input = placed(d[2]); inst.gold = shown(d[4], options); }
        var row = {inst: inst, perturbation: index.perturbations[v[0]], k: k, h: h, rest: rest,
                   answer: shown(v[2], options), logprobs: v[3], score: v[4], low: null};
        rows[at + list.length] = row;
        list.push(row);
      });
    });
    read[k] = {rows: list, heads: page.heads, lower: null, text: null, hit: null};
    state[k] = 2;
  };

  function ask(k) {
    if (state[k] !== 0) return;
    state[k] = 1;
    var script = document.createElement("script");
    script.src = pages[k][0];
    script.onload = function () { arrived(k); };
    script.onerror = function () { arrived(k); };
    document.body.appendChild(script);
  }
  function arrived(k) {
    if (state[k] !== 2) state[k] = 3;  // missing, or not this run's
    if (filter) scan();
    render();
  }
  function pageOf(n) {
    var low = 0, high = pages.length - 1;
    while (low < high) {
      var middle = (low + high + 1) >> 1;
      if (pages[middle][1] <= n) low = middle; else high = middle - 1;
    }
    return low;
  }

  function wanted(k) { return !(filter.group && pages[k][3].indexOf(filter.groupId) < 0); }
  // Which heads of page k hold a search text. A head ends a line and the text has no line break, so a
  // prompt holds the text where its head or its rest does.
  function headsFor(k, text) {
    var info = read[k];
    if (info.text !== text) {
      if (info.lower === null) info.lower = info.heads.map(function (h) { return h.toLowerCase(); });
      info.hit = info.lower.map(function (h) { return h.indexOf(text) >= 0; });
      info.text = text;
    }
    return info;
  }
  function hit(r, f, info) {
    if (f.group && r.inst.group !== f.group) return false;
    if (f.perturbation !== null && r.perturbation !== f.perturbation) return false;
    if (f.correct === "correct" && !(r.score >= 1)) return false;
    if (f.correct === "incorrect" && !(r.score !== null && r.score < 1)) return false;
    if (!f.text) return true;
    // Lower-cased text to search, built once a row is first searched: the id, input and gold of its
    // instance, the rest of its prompt, its answer; the page's heads are searched once for all. The
    // text has no line break, so these are searched one by one.
    var inst = r.inst, rest = r.rest;
    if (inst.hay === null) inst.hay = (inst.id + "\n" + (inst.input || "") + "\n" + inst.gold).toLowerCase();
    if (rest.low === null) rest.low = rest.text.toLowerCase();
    if (r.low === null) r.low = r.answer.toLowerCase();
    return inst.hay.indexOf(f.text) >= 0 || rest.low.indexOf(f.text) >= 0 || r.low.indexOf(f.text) >= 0 ||
      (r.h >= 0 && info.hit[r.h]);
  }
  // Search the pages in order, as far as they are read; ask for the next ones.
  function scan() {
    while (scanned < pages.length) {
      var k = scanned;
      if (!wanted(k) || state[k] === 3) { scanned++; continue; }
      if (state[k] !== 2) {
        ask(k);
        for (var j = k + 1, asked = 0; j < pages.length && asked < AHEAD; j++) {
          if (wanted(j)) { ask(j); asked++; }
        }
        return;
      }
      var info = filter.text ? headsFor(k, filter.text) : null;
      var list = read[k].rows, at = pages[k][1];
      for (var i = 0; i < list.length; i++) if (hit(list[i], filter, info)) matches.push(at + i);
      scanned++;
    }
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  // The input first, then the whole prompt folded under it.
  function question(td, r) {
    var prompt = (r.h < 0 ? "" : read[r.k].heads[r.h]) + r.rest.text;
    var input = document.createElement("div");
    input.className = "input";
    if (r.inst.input !== null) {
      input.textContent = r.inst.input;
      if (r.perturbation) {  // the stored input is the unperturbed text; the whole prompt holds the perturbed one
        var note = document.createElement("span");
        note.className = "muted small";
        note.textContent = " (before the perturbation)";
        input.appendChild(note);
      }
    } else {
      input.textContent = prompt.length > 90 ? prompt.slice(-90).replace(/^\S*\s/, "…") : prompt;
    }
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "whole prompt (" + prompt.length.toLocaleString("en-US") + " characters)";
    var pre = document.createElement("pre");
    pre.textContent = prompt;
    details.appendChild(summary); details.appendChild(pre);
    td.appendChild(input); td.appendChild(details);
  }
  function tableRow(r, n) {
    var tr = document.createElement("tr");
    tr.dataset.index = n;
    cell(tr, r.inst.id); cell(tr, r.inst.group); cell(tr, r.perturbation);
    question(cell(tr, "", "prompt"), r);
    cell(tr, r.answer, "answer");
    cell(tr, r.logprobs.length ? r.logprobs.map(function (x, k) { return String.fromCharCode(65 + k) + " " + x.toFixed(3); }).join("  ") : "", "small");
    cell(tr, r.inst.gold, "gold");
    var s = r.score;
    cell(tr, s === null ? "" : (s >= 1 ? "yes" : (s <= 0 ? "no" : s.toFixed(3))), s === null ? "" : (s >= 1 ? "yes" : "no"));
    return tr;
  }
  function render() {
    var count = filter ? matches.length : total;
    var views = Math.max(1, Math.ceil(count / VIEW));
    view = Math.max(0, Math.min(view, views - 1));
    var body = $("instance-rows");
    body.textContent = "";
    var loading = false;
    for (var n = view * VIEW; n < Math.min(count, view * VIEW + VIEW); n++) {
      var g = filter ? matches[n] : n;
      if (rows[g]) body.appendChild(tableRow(rows[g], g));
      else if (state[pageOf(g)] !== 3) { loading = true; ask(pageOf(g)); }
    }
    var searching = filter !== null && scanned < pages.length;
    var unreadable = state.filter(function (s) { return s === 3; }).length;
    $("match-count").textContent = count + " of " + total + " rows" +
      (searching ? " (searching " + scanned + " of " + pages.length + " pages)" : "") +
      (unreadable ? " (" + unreadable + " data page" + (unreadable > 1 ? "s" : "") + " could not be read)" : "");
    $("page-label").textContent = "page " + (view + 1) + " of " + views + (loading ? " (reading)" : "");
    $("first").disabled = $("prev").disabled = view === 0;
    $("next").disabled = $("last").disabled = view >= views - 1;
    $("instances").dataset.state = searching ? "searching" : (loading ? "reading" : "ready");
  }
  function apply() {
    var text = $("filter-text").value.trim().toLowerCase();
    var correct = $("filter-correct").value;
    var group = $("filter-group").value;
    var perturbation = $("filter-perturbation").value;
    filter = text || correct || group || perturbation ? {
      text: text, correct: correct, group: group, groupId: index.groups.indexOf(group),
      perturbation: perturbation === "" ? null : (perturbation === "(none)" ? "" : perturbation)
    } : null;
    matches = [];
    scanned = 0;
    view = 0;
    if (filter) scan();
    render();
  }
  ["filter-text", "filter-correct", "filter-group", "filter-perturbation"].forEach(function (id) {
    $(id).addEventListener("input", apply);
  });
  $("first").addEventListener("click", function () { view = 0; render(); });
  $("prev").addEventListener("click", function () { view -= 1; render(); });
  $("next").addEventListener("click", function () { view += 1; render(); });
  $("last").addEventListener("click", function () { view = Infinity; render(); });
  apply();
})();
