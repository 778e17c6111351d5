"""Everything between a card reader and a verified CardIdentity (DESIGN §4); no Textual."""
