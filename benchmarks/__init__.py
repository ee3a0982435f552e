"""Memory and time scaling benchmarks of braintrace's learners (run by hand; not part of the test suite's timings).

``python -m benchmarks.run --quick`` runs the small grid; see ``benchmarks/README.md``.
"""
