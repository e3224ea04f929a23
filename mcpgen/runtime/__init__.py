"""The small, stable library that generated servers import: validation, transports, policy."""
