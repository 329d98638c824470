"""The daemon's web side: REST API, dashboard, auth, front door."""
