"""The remote card agent (docs/architecture.md, "Remote card agent"): a staff member's
readers served on a private UNIX socket that ``ssh -R`` forwards to the kiosk. The wire
protocol (``protocol``), the agent on the staff member's computer (``server``) and the
kiosk's reader backend that talks to it (``client``).
"""
