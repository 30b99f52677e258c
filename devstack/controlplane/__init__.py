"""A real kube-apiserver and etcd, built from Go modules (`build.py`) and run on loopback
(`cluster.py`), for the tests and the local stack."""
