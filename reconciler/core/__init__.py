"""The core: plan, apply, drift, dump and their records (plan files, journal, locks).

It reads the desired state (`reconciler.config`) and the live state through the NewStore
adapter (`reconciler.newstore`), returns values and raises; it never formats prose (that is
`reconciler.render`)."""
