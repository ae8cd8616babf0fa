"""Acting on a report: narrow a regression to one release (``bisect``), reproduce one
result (``reproduce``), file issues (``filing``). Outer environment, no torch; it may
read reports, the report never imports it."""
