"""Private, throw-away service instances (Postfix, Redis, an SMTP sink) for tests and the demo."""
