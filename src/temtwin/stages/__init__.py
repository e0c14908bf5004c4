"""The stage functions: one module per rule, ``temtwin.stages.<rule>``, each with ``run(ctx)``.

A stage's ``run`` reads its inputs (through :mod:`temtwin.results`), calls the science (``temtwin.<package>``)
and writes its results (``ctx.h5`` / ``ctx.file``); the registry :mod:`temtwin.workflow.stages` lists them.
"""
