"""``wacanon doctor``: the seed's troubleshooting section as measurements.

Each of the seed's common problems — duplicated events, high latency, normalization
errors, conversations not created — is a set of checks against the configuration and
the database (:mod:`wacanon.doctor.store`), and with ``--url`` against a running server
(:mod:`wacanon.doctor.live`). Each check that finds something names the command, or the
SQL, that fixes it.
"""
