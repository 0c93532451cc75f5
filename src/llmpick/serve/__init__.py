"""The gateway: FastAPI app, OpenAI routes, routing, auth and limits, logs, metrics."""
