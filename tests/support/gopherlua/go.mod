// The gopher-lua interpreter Argo CD runs resource health checks in, for
// tests/unit/test_argocd_health.py (built by tests/support/gopherlua/__init__.py).
module qa-operator/tests/gopherlua

go 1.26.0

require github.com/yuin/gopher-lua v1.1.2
