"""Rendering reports (text, JSON, JUnit) and the publication supplement."""
