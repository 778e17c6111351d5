"""The kiosk's colour themes (Textual themes): the default, and a high-contrast one for
people who need it (white and yellow on black, the borders of every field bright).

Colours are never the only signal (widgets/keys_in_order.py, widgets/prose.py): the
themes change how easy things are to see, not what can be told apart."""

from __future__ import annotations

from textual.theme import Theme

# The names in the configuration and on the account (smis_tui.core.config.THEMES) →
# Textual's theme names.
DEFAULT_THEME = "textual-dark"
HIGH_CONTRAST = Theme(
    name="smis-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FFFF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#202020",
    boost="#303030",
    success="#00FF00",
    warning="#FFFF00",
    error="#FF5555",
    dark=True,
    variables={
        "border": "#FFFF00",
        "border-blurred": "#FFFFFF",
        "block-cursor-background": "#FFFF00",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-background": "#FFFFFF 30%",
        "footer-key-foreground": "#FFFF00",
        "footer-description-foreground": "#FFFFFF",
        "input-cursor-background": "#FFFF00",
        "input-cursor-foreground": "#000000",
        "input-selection-background": "#FFFF00 40%",
        "button-focus-text-style": "bold reverse",
        "text-muted": "#FFFFFF",
        "scrollbar": "#FFFFFF",
    },
)
TEXTUAL_THEMES = {"default": DEFAULT_THEME, "high-contrast": HIGH_CONTRAST.name}
