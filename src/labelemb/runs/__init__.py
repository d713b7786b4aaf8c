"""The bottom layer for runs: run folder, config, metrics log, atomic checkpoints, result,
progress lines and seeding. Both engines and the reports use it; it imports nothing of
labelemb's other subpackages."""
