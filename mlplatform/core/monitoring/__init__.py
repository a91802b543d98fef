"""Model monitoring: reference profiles, captured records, per-window quality and drift.

Modules, each to read in one sitting:

- :mod:`.windows`: window lengths, alignment and which windows are due;
- :mod:`.records`: the Parquet layout of inference records in the artifact store (shared with
  the gateway's capture), writing and reading one window's records;
- :mod:`.ingest`: JSON, Parquet and Arrow IPC event bodies -> validated record tables + reasons;
- :mod:`.profiles`: profiling reference data once, and the per-process cache of prepared
  references (sorted values, PSI cut points) reused by every window;
- :mod:`.quality`: data-quality figures of one window (missing, type, range, unseen, output);
- :mod:`.drift_window`: every enabled drift metric per feature, with fast paths for psi and ks;
- :mod:`.performance`: latency, error rate and label-based accuracy / F1 / MAE / RMSE;
- :mod:`.window_job`: the ``compute_monitor_window`` job: read, compute, replace the points;
- :mod:`.scheduler`: ``close_due_windows``, which enqueues windows that ended.

The use cases the API and CLI call are in :mod:`mlplatform.core.services.monitoring`.
"""
