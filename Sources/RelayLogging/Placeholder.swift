// Placeholder during development.
