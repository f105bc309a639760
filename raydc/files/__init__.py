"""Files written so that a crash never leaves half of one: atomic writes and locks, checkpoints loaded with
weights_only."""
