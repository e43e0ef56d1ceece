"""Thin Kopf handlers, one module per kind; `runtime` starts the operator."""
