"""Architecture search: the encoding and mutation (space), aging evolution (evolution), the runner."""
