"""keel.monitor: watching released models — drift and data quality, performance and
fairness over time once labels arrive, and alerts."""
