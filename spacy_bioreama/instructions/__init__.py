"""Instruction datasets: the build config, the builder that asks each task for its
units, and the statistics it reports. Sits on `tasks` (which renders every prompt and
target) and below `training` (which reads the JSON Lines it writes)."""
