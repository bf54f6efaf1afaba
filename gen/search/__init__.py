"""Architecture search: the encoding and mutation (space), aging evolution (evolution), the
engine (settings, workers, the loop), its two stages (gan_stage, classifier_stage) and the start
that picks one (start)."""
