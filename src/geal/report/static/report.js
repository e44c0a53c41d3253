// Reports on itself once everything has loaded: how many thumbnails of each kind it
// holds and how many of them decoded and have a size on screen. Headless checks read
// these attributes on <html> (geal.report.browser.check_in_browser).
window.addEventListener("load", function () {
  var root = document.documentElement;
  function count(kind) {
    var figs = document.querySelectorAll("figure." + kind), shown = 0;
    for (var i = 0; i < figs.length; i++) {
      var img = figs[i].querySelector("img");
      if (!img) continue;
      var r = img.getBoundingClientRect();
      if (img.complete && img.naturalWidth > 0 && r.width > 0 && r.height > 0) shown++;
    }
    return [figs.length, shown];
  }
  var p = count("pick"), q = count("random");
  root.setAttribute("data-picks", p[0]);
  root.setAttribute("data-picks-shown", p[1]);
  root.setAttribute("data-random", q[0]);
  root.setAttribute("data-random-shown", q[1]);
  root.setAttribute("data-load-ms", Math.round(performance.now()));
});
