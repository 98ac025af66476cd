// The report's two filters. "Failed only" hides passed cases (their matrix
// columns too), requirement rows without a failure and passed or skipped check
// rows; "MUST only" hides SHOULD and MAY rows (and, with "failed only", cases
// that only warned). The URL fragment sets them on load: #failed-only,must-only.
(function () {
  "use strict";
  var failed = document.getElementById("filter-failed");
  var must = document.getElementById("filter-must");
  var counter = document.getElementById("shown");
  var cases = document.querySelectorAll("details.case");
  var table = document.getElementById("matrix-table");
  var offset = table ? Number(table.getAttribute("data-offset")) : 0;

  function apply() {
    var f = failed.checked;
    var m = must.checked;
    var hiddenCase = [];
    var shown = 0;
    cases.forEach(function (c) {
      var v = c.getAttribute("data-verdict");
      var hide = f && (v === "pass" || (m && v === "warn"));
      c.hidden = hide;
      hiddenCase[Number(c.getAttribute("data-case"))] = hide;
      if (!hide) shown++;
    });
    if (table) {
      Array.prototype.forEach.call(table.rows, function (row) {
        var level = row.getAttribute("data-level");
        if (level) {
          row.hidden = (m && level !== "MUST") || (f && row.getAttribute("data-bad") !== "1");
        }
        for (var i = offset; i < row.cells.length; i++) {
          row.cells[i].hidden = hiddenCase[i - offset] === true;
        }
      });
    }
    document.querySelectorAll("tr.check").forEach(function (row) {
      var v = row.getAttribute("data-verdict");
      row.hidden = (m && row.getAttribute("data-level") !== "MUST") || (f && (v === "pass" || v === "skip"));
    });
    counter.textContent = shown + " of " + cases.length + " cases shown";
  }

  failed.addEventListener("change", apply);
  must.addEventListener("change", apply);
  var wanted = location.hash.slice(1).split(",");
  if (wanted.indexOf("failed-only") >= 0 && !failed.checked) failed.click();
  if (wanted.indexOf("must-only") >= 0 && !must.checked) must.click();
  apply();
})();
