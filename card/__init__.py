"""Smart cards, from the facts a card gives to a verified identity (docs/architecture.md,
"Cards"); no Textual.

This level holds what every transport shares: the card errors, the certificate's
identity and its validation, PIN handling, APDU helpers, the login challenge, the
connection protocols (``transport``) and how a card signs (``signing``). The rooms
below: ``card.readers`` (PC/SC and the card profiles), ``card.agent`` (the remote card
agent) and ``card.sim`` (simulated cards and the test PKI, never imported by the
others).
"""
