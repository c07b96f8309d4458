//! End-to-end tests with real container runtimes (containerd, podman, a libcni client); see tests/.
