"""The archive as the verbs see it: one view over the client, counted calls."""
