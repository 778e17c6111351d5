"""smis-tui: the SMIS account-lifecycle kiosk."""

import os

# Textual paints at most TEXTUAL_FPS frames a second (60 unless set) and a change waits
# for the next frame. At 120 the results of a keystroke show about 15 ms sooner
# (bench/bench_tui.py); the kiosk's screens change only on input or a card, so the
# higher cap costs nothing while idle. Set before Textual is first imported (its
# constants are read once); an operator's own TEXTUAL_FPS wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
