"""Small helpers shared by the package: atomic writes and safe loading (``io``), int-or-pair settings (``pairs``),
state-dict checks (``state_dict``), seed derivation (``seeds``)."""
