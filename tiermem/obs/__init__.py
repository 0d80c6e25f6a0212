"""Observability: Prometheus metrics (`metrics`), logging (`logs`), tracing (`tracing`).

- `metrics.EngineMetrics`: a Prometheus registry per `Engine`, instrumenting the
  engine's public methods on the instance, served by `Engine.serve_metrics()`.
- `logs.configure()`: stdlib logging, human-readable text or one JSON object a line.
- `tracing.span()`: an OpenTelemetry span when the ``otel`` extra is installed, else a no-op.
"""
