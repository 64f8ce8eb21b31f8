"""The edge: configuration, the `newsletter` command line and (later) the web service.

The only package that reads configuration or the environment, and the only
place where domain errors become exit codes or HTTP statuses.
"""
