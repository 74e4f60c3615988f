"""mindprint."""
