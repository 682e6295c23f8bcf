// htmx leaves a page as it is when an answer is 4xx or 5xx. For a link or
// a form (boosted navigation) the console's answer is a page saying what
// went wrong, so show it; a self-refreshing part (hx-trigger "every …")
// keeps what it shows until the next refresh succeeds.
document.addEventListener('htmx:beforeSwap', (e) => {
  const status = e.detail.xhr.status;
  if (status >= 400 && !e.detail.elt.closest('[hx-trigger^="every"]')) {
    e.detail.shouldSwap = true;
    e.detail.isError = false;
  }
});
