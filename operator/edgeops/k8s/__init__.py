"""The only package (besides the devcluster) that imports the kubernetes client."""
