// Benchmark helper injected into a copy of index.html by bench/page.mjs. When
// window.linkspeedResult leaves the "running" state, it POSTs the result to the
// collector URL in the "report" query parameter. Chromium runs without a
// debugging connection, so this request is the only way the figures get out.
(function () {
  const reportUrl = new URLSearchParams(window.location.search).get('report');
  if (!reportUrl) {
    return;
  }
  const timer = setInterval(() => {
    const result = window.linkspeedResult;
    if (!result || result.state === 'running') {
      return;
    }
    clearInterval(timer);
    // A no-cors POST with a text body needs no CORS preflight.
    fetch(reportUrl, { method: 'POST', mode: 'no-cors', body: JSON.stringify({ kind: 'page', result }) });
  }, 250);
})();
