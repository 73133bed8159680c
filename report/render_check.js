(function () {
  function check() {
    var imgs = document.images, ok = 0, svgs = document.querySelectorAll('svg'), drawn = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
    for (var j = 0; j < svgs.length; j++) { var r = svgs[j].getBoundingClientRect(); if (r.width > 0 && r.height > 0) drawn++; }
    var b = document.body;
    b.setAttribute('data-images-total', imgs.length);
    b.setAttribute('data-images-ok', ok);
    b.setAttribute('data-svgs-total', svgs.length);
    b.setAttribute('data-svgs-rendered', drawn);
    b.setAttribute('data-table-rows', document.querySelectorAll('table tr').length);
    function rect(el) {
      if (!el) return '';
      var r = el.getBoundingClientRect();
      return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(',');
    }
    b.setAttribute('data-first-img-rect', rect(document.querySelector('.samples img')));
    b.setAttribute('data-first-svg-rect', rect(document.querySelector('svg')));
    // horizontal overflow: elements whose right edge is beyond the window, except inside a
    // scrollable table wrapper (.table-wrap) or a closed zoom overlay
    var vw = window.innerWidth, over = [];
    var all = document.body.getElementsByTagName('*');
    for (var k = 0; k < all.length; k++) {
      var el = all[k];
      if (el.closest('.table-wrap') && el.className !== 'table-wrap') continue;
      var rr = el.getBoundingClientRect();
      if (rr.width > 0 && rr.right + window.scrollX > vw + 0.5) over.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined ? '.' + el.className : ''));
    }
    b.setAttribute('data-window-width', vw);
    b.setAttribute('data-scroll-width', document.documentElement.scrollWidth);
    b.setAttribute('data-overflowing', over.slice(0, 20).join(' '));
    b.setAttribute('data-overflow-count', over.length);
    // the radar panels (#radar: this run, or this run and the paper's rows; #radar-paper: the paper's
    // rows when the test set is another): text labels, named lines, labels that overlap a marker
    function radarFacts(sel) {
      var radar = document.querySelector(sel + ' svg'), texts = [], named = 0, hits = 0;
      if (radar) {
        var tx = radar.querySelectorAll('text');
        for (var t = 0; t < tx.length; t++) texts.push(tx[t].textContent.trim());
        named = radar.querySelectorAll('g.radar-line > title').length;
        var marks = radar.querySelectorAll('g.radar-line use');
        var axisLabels = radar.querySelectorAll('g[id^="xtick"] text, g[id^="ytick"] text');
        for (var u = 0; u < axisLabels.length; u++) {
          var a = axisLabels[u].getBoundingClientRect();
          for (var v = 0; v < marks.length; v++) {
            var q = marks[v].getBoundingClientRect();
            if (q.width > 0 && a.left < q.right && q.left < a.right && a.top < q.bottom && q.top < a.bottom) hits++;
          }
        }
      }
      return [texts, named, hits];
    }
    var run = radarFacts('#radar'), paper = radarFacts('#radar-paper');
    b.setAttribute('data-radar-texts', run[0].join('|'));
    b.setAttribute('data-radar-named-lines', run[1]);
    b.setAttribute('data-radar-paper-texts', paper[0].join('|'));
    b.setAttribute('data-radar-paper-named-lines', paper[1]);
    b.setAttribute('data-radar-label-marker-overlaps', run[2] + paper[2]);
    // box labels in the sample images (their rectangles, as drawn): pairs that cover each other
    var labelled = document.querySelectorAll('img[data-labels]'), labelPairs = 0, labelOverlaps = 0, labelCount = 0;
    for (var li = 0; li < labelled.length; li++) {
      var rs = labelled[li].getAttribute('data-labels').split(';').map(function (t) { return t.split(',').map(Number); });
      labelCount += rs.length;
      for (var p1 = 0; p1 < rs.length; p1++) for (var p2 = p1 + 1; p2 < rs.length; p2++) {
        labelPairs++;
        var A = rs[p1], B = rs[p2];
        if (A[0] < B[2] && B[0] < A[2] && A[1] < B[3] && B[1] < A[3]) labelOverlaps++;
      }
    }
    b.setAttribute('data-box-labels', labelCount);
    b.setAttribute('data-box-label-pairs', labelPairs);
    b.setAttribute('data-box-label-overlaps', labelOverlaps);
    // chart text as rendered at 100% zoom: the smallest glyph height of any chart's text (px)
    var small = 1e9, smallText = '', ctext = document.querySelectorAll('.charts svg text, .stats-plots svg text');
    for (var c = 0; c < ctext.length; c++) {
      var h = parseFloat(getComputedStyle(ctext[c]).fontSize) * (ctext[c].getScreenCTM() ? ctext[c].getScreenCTM().a : 1);
      if (ctext[c].textContent.trim() && h > 0 && h < small) { small = h; smallText = ctext[c].textContent.trim(); }
    }
    b.setAttribute('data-chart-min-font-px', ctext.length ? small.toFixed(1) : '');
    b.setAttribute('data-chart-min-font-text', smallText);
    // the breakdown tables and the confusion heat-tables: their cells, and text that covers other
    // text or spills out of its cell
    var bt = document.querySelectorAll('table.confusion, table.breakdown'), btCells = 0, btOver = 0, confCells = 0;
    for (var ti = 0; ti < bt.length; ti++) {
      var cs = bt[ti].querySelectorAll('th, td'), rects = [];
      btCells += cs.length;
      if (bt[ti].classList.contains('confusion')) confCells += bt[ti].querySelectorAll('td').length;
      for (var ci = 0; ci < cs.length; ci++) {
        var rg = document.createRange();
        rg.selectNodeContents(cs[ci]);
        var tr = rg.getBoundingClientRect(), cr = cs[ci].getBoundingClientRect();
        if (tr.width > 0 && tr.height > 0) {
          rects.push(tr);
          if (tr.left < cr.left - 0.5 || tr.right > cr.right + 0.5) btOver++;
        }
      }
      for (var i1 = 0; i1 < rects.length; i1++) for (var i2 = i1 + 1; i2 < rects.length; i2++) {
        var R1 = rects[i1], R2 = rects[i2];
        if (R1.left < R2.right - 0.5 && R2.left < R1.right - 0.5 && R1.top < R2.bottom - 0.5 && R2.top < R1.bottom - 0.5) btOver++;
      }
    }
    b.setAttribute('data-breakdown-tables', bt.length);
    b.setAttribute('data-breakdown-cells', btCells);
    b.setAttribute('data-confusion-tables', document.querySelectorAll('table.confusion').length);
    b.setAttribute('data-confusion-cells', confCells);
    b.setAttribute('data-breakdown-text-overlaps', btOver);
    // the breakdown bar charts (per category, per size) and the dataset section's plots: pairs of text
    // elements of one chart that cover each other
    var bars = document.querySelectorAll('.breakdown-charts svg, .stats-plots svg'), barTexts = 0, barOver = 0,
        barOverText = '';
    for (var si = 0; si < bars.length; si++) {
      var tx2 = bars[si].querySelectorAll('text'), tr2 = [];
      for (var xi = 0; xi < tx2.length; xi++) {
        var q2 = tx2[xi].getBoundingClientRect();
        if (tx2[xi].textContent.trim() && q2.width > 0) tr2.push([q2, tx2[xi].textContent.trim()]);
      }
      barTexts += tr2.length;
      for (var j1 = 0; j1 < tr2.length; j1++) for (var j2 = j1 + 1; j2 < tr2.length; j2++) {
        var P1 = tr2[j1][0], P2 = tr2[j2][0];
        if (P1.left < P2.right - 0.5 && P2.left < P1.right - 0.5 && P1.top < P2.bottom - 0.5 && P2.top < P1.bottom - 0.5) {
          barOver++;
          if (!barOverText) barOverText = tr2[j1][1] + ' / ' + tr2[j2][1];
        }
      }
    }
    b.setAttribute('data-bar-chart-texts', barTexts);
    b.setAttribute('data-bar-chart-text-overlaps', barOver);
    b.setAttribute('data-bar-chart-overlap-text', barOverText);
    b.setAttribute('data-render-check', 'done');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
