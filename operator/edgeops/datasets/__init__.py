"""Dataset ingestion: read source files, clean and validate rows, split deterministically,
publish content-addressed versions with a statistical profile.

Nothing here talks to Kubernetes; the Dataset controller calls :func:`collect`.
"""
