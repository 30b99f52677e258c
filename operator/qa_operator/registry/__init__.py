"""OCI registry client and daemon-less image publishing for the serving image."""
