"""The report step: check records from every cell in, one compatibility grid out.

One module per job: ``grid`` (records -> model), ``order`` (suite / row order),
``summary`` (the at-a-glance lines), ``causes`` (root causes, traceback trimming),
``breakages`` (the first-bad table), ``diff`` (what changed since a baseline), ``trend``,
``drift``, ``render_*`` and ``junit`` (model -> files), ``write``
(the report folder; its ``write_report`` is the entry point) and ``screenshot`` (the
page in a headless browser). Runs in the outer environment, never in a cell: no torch.
Triage (bisect, filing) acts on reports; the report never imports it.
"""
