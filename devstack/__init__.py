"""The local stack's container pieces: a Debian base image built without Docker, and a runner
that pulls an image from a registry and runs it isolated under bubblewrap. See README.md."""
