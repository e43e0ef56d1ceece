"""Metric names shared by the operator and the gateway, and the Prometheus exposition."""
