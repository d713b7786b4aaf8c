"""Training machinery shared by the classification and sequence runners."""
