"""Running as a service: systemd readiness, the milter's listening socket, the
start-up line. What `relaywarden run` (and `web`, `agent`) need around the
milter itself, kept out of the transport."""
