"""A local Kubernetes control plane for development, tests and the demo, without Docker.

Real kube-apiserver, etcd and kube-controller-manager, a process-based node that runs
EdgeOps's own images as local processes, an S3 server (MinIO) and Prometheus, all bound
to 127.0.0.1 on free ports. Entry point: `edgeops.devcluster.cluster.DevCluster`.
"""
