"""The web service (design §7); `create_app` builds it."""
