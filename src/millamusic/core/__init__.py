"""Values and plumbing every layer shares: the Audio value, errors, units, atomic files, the stage cache."""
