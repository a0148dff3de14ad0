"""The Dagster code location: CINNOX sent-campaign assets, their checks, resources and schedule.

`pipelines.definitions:defs` is what `workspace.yaml` loads.
"""
